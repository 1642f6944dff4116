"""cri_proxy/h2/frames.py: the frames the proxy writes itself, read back by hyperframe and hpack
(the python-hyper parsers a peer's HTTP/2 stack stands in for)."""

from __future__ import annotations

from hpack import Decoder
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame

from cri_proxy.h2 import frames as h2


def parsed(raw: bytes) -> Frame:
    frame, length = Frame.parse_frame_header(memoryview(raw[:9]))
    assert length == len(raw) - 9
    frame.parse_body(memoryview(raw[9:]))
    return frame


def test_frame_writes_the_nine_byte_header_before_the_payload() -> None:
    raw = h2.frame(h2.WINDOW_UPDATE, 0, 3, (10).to_bytes(4, "big"))
    got = parsed(raw)
    assert isinstance(got, WindowUpdateFrame) and got.stream_id == 3 and got.window_increment == 10


def test_a_grpc_error_is_a_trailers_only_answer_that_leaves_the_table_alone() -> None:
    got = parsed(h2.grpc_error_frame(5, 14, "runtime gone: 100%"))
    assert isinstance(got, HeadersFrame) and got.stream_id == 5
    assert {"END_HEADERS", "END_STREAM"} <= set(got.flags)
    decoder = Decoder()
    headers = decoder.decode(got.data)
    assert headers == [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "14"),
                       ("grpc-message", "runtime gone: 100%25")]
    assert not decoder.header_table.dynamic_entries  # no entry added: the real encoder never sees this frame


def test_grpc_message_text_percent_encodes_outside_printable_ascii() -> None:
    assert h2.grpc_message_text("ok: a/b") == "ok: a/b"
    assert h2.grpc_message_text("é\n%") == "%C3%A9%0A%25"


def test_reset_window_update_and_goaway_carry_their_fields() -> None:
    rst = parsed(h2.rst_stream_frame(7))
    assert isinstance(rst, RstStreamFrame) and (rst.stream_id, rst.error_code) == (7, h2.ERR_CANCEL)
    update = parsed(h2.window_update_frame(0, 65535))
    assert isinstance(update, WindowUpdateFrame) and update.window_increment == 65535
    away = parsed(h2.goaway_frame(9, h2.ERR_ENHANCE_YOUR_CALM, b"too many pings"))
    assert isinstance(away, GoAwayFrame)
    assert (away.last_stream_id, away.error_code, away.additional_data) == (9, 0xB, b"too many pings")


def test_settings_values_reads_each_pair_and_set_flag_adds_one_flag() -> None:
    raw = bytes(SettingsFrame(0, settings={h2.SETTINGS_HEADER_TABLE_SIZE: 8192, 4: 1 << 20}).serialize())
    assert h2.settings_values(raw[9:]) == {h2.SETTINGS_HEADER_TABLE_SIZE: 8192, 4: 1 << 20}
    raw = h2.frame(h2.DATA, 0, 1, b"abc")
    flagged = h2.set_flag(raw, h2.FLAG_END_STREAM)
    assert flagged[4] == h2.FLAG_END_STREAM and flagged[:4] == raw[:4] and flagged[5:] == raw[5:]
