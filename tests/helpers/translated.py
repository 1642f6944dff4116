"""Shared pieces of the tests of translating connections (tests/proxy/test_translate.py,
test_reading.py, test_answering.py, test_requests.py): the translation policy a v1 client in
front of a v1alpha2 runtime gets, and raw clients whose calls are cut anywhere.
"""

from __future__ import annotations

from hpack import Encoder
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame

from cri_proxy.model.cri import parse_path
from tests.helpers.rawh2 import RawClient, Reply, grpc_message, hello, request_headers

VERSION = "/runtime.v1.RuntimeService/Version"


def to_v1alpha2(path: str) -> str | None:
    return "v1alpha2" if parse_path(path).api == "v1" else None


def dribbled(sock: str, size: int) -> list[Reply]:
    """A first call, then many written at once and cut into writes of `size` bytes: blocks and
    frames split anywhere."""
    encoder, wire = Encoder(), b""
    first = encoder.encode(request_headers(VERSION) + [("x-call", "first")])
    for i in range(1, 31):
        sid, path = 2 * i + 1, VERSION if i % 5 else "/runtime.v1.RuntimeService/StreamContainers"
        block = encoder.encode(request_headers(path) + [("x-call", f"c{i}" * (i % 7 + 1))])
        half = len(block) // 2
        wire += (HeadersFrame(sid, block[:half]).serialize()
                 + ContinuationFrame(sid, block[half:], flags=["END_HEADERS"]).serialize()
                 + DataFrame(sid, grpc_message(b"m%d" % i)).serialize()
                 + DataFrame(sid, b"", flags=["END_STREAM"]).serialize())
    with RawClient(sock) as client:
        client.send(hello() + HeadersFrame(1, first, flags=["END_HEADERS", "END_STREAM"]).serialize())
        replies = [client.read_reply(1)]  # the connection has settled: what follows is relayed in runs
        for i in range(0, len(wire), size):
            client.send(wire[i:i + size])
        return replies + read_all(client, [2 * i + 1 for i in range(1, 31)])


def read_all(client: RawClient, streams: list[int]) -> list[Reply]:
    """The replies of calls answered in any order (each header block decoded as it comes)."""
    replies = {sid: Reply() for sid in streams}
    while not all(r.ended for r in replies.values()):
        frame = client._frame()
        assert frame is not None, "the proxy closed the connection"
        if isinstance(frame, (HeadersFrame, ContinuationFrame)):
            fields = [(k.decode(), v.decode()) for k, v in client.decoder.decode(frame.data, raw=True)]
            if frame.stream_id in replies:
                replies[frame.stream_id].headers += fields
                replies[frame.stream_id].ended = "END_STREAM" in frame.flags
        elif isinstance(frame, DataFrame) and frame.stream_id in replies:
            replies[frame.stream_id].data += frame.data
    return [replies[sid] for sid in streams]
