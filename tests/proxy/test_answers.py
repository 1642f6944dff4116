"""The proxy's own responses (proxy/answers.py) read as gRPC and leave HPACK tables alone."""

from __future__ import annotations

import pytest
from hpack import Decoder
from hyperframe.frame import Frame

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.proxy import answers


def frames(data: bytes) -> list[Frame]:
    out, pos = [], 0
    while pos < len(data):
        frame, length = Frame.parse_frame_header(memoryview(data[pos:pos + 9]))
        frame.parse_body(memoryview(data[pos + 9:pos + 9 + length]))
        out.append(frame)
        pos += 9 + length
    return out


def test_an_error_is_one_trailers_only_headers_frame() -> None:
    (frame,) = frames(answers.error(7, 12, "Stream is not available: ünïcode, 100%"))
    decoder = Decoder()
    fields = dict((k.decode(), v.decode()) for k, v in decoder.decode(frame.data, raw=True))
    assert frame.stream_id == 7 and {"END_HEADERS", "END_STREAM"} <= set(frame.flags)
    assert fields[":status"] == "200" and fields["grpc-status"] == "12"
    assert fields["grpc-message"] == "Stream is not available: %C3%BCn%C3%AFcode, 100%25"
    assert decoder.header_table._current_size == 0


@pytest.mark.parametrize(("driver", "value"), [("systemd", v1.SYSTEMD), ("cgroupfs", v1.CGROUPFS)])
def test_runtime_config_is_what_protobuf_writes(driver: str, value: int) -> None:
    expected = v1.RuntimeConfigResponse(linux=v1.LinuxRuntimeConfiguration(cgroup_driver=value))  # type: ignore[arg-type]
    assert answers.RUNTIME_CONFIG[driver] == expected.SerializeToString()
    head, data, tail = frames(answers.reply(3, answers.RUNTIME_CONFIG[driver]))
    assert v1.RuntimeConfigResponse.FromString(data.data[5:]) == expected
    assert "END_STREAM" in tail.flags and "END_STREAM" not in head.flags
    assert answers.data_length(answers.reply(3, answers.RUNTIME_CONFIG[driver])) == len(data.data)
