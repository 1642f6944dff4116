"""A raw HTTP/2 upstream for the translation tests: it shows exactly which header blocks arrive.

It serves one unix socket: sends SETTINGS (with the SETTINGS_HEADER_TABLE_SIZE a test
chooses), acknowledges the client's, decodes every request header block with `hpack` (the
python-hyper reference), records the block's bytes, the fields and the decoder's table size,
and answers each request when it ends: HEADERS, the request's message echoed in DATA, and
trailers, all encoded with indexing (so the client's HPACK table grows as a runtime's does).
The CRI paths it serves are those of `api`; any other CRI path is answered UNIMPLEMENTED,
as a runtime answers a version it lacks.
"""

from __future__ import annotations

import asyncio
import pathlib
from dataclasses import dataclass, field

from hpack import Decoder, Encoder
from hyperframe.frame import DataFrame, HeadersFrame, SettingsFrame

from cri_proxy.h2 import frames as h2


@dataclass
class Request:
    stream_id: int
    block: bytes  # the HPACK bytes as they arrived, HEADERS and CONTINUATIONs joined
    frames: int  # how many frames carried the block
    headers: list[tuple[str, str]]
    table_size: int  # the decoder's dynamic table after the block
    acked: bool  # the client had acknowledged the SETTINGS (so its lower table size applied)
    body: bytes = b""


@dataclass
class H2Upstream:
    path: pathlib.Path
    api: str = "v1alpha2"
    table_size: int | None = None  # SETTINGS_HEADER_TABLE_SIZE sent to each client (None: not sent)
    # A SETTINGS_HEADER_TABLE_SIZE sent later, (after how many requests, size): ahead of that request's answer.
    resize: tuple[int, int] | None = None
    requests: list[Request] = field(default_factory=list)
    _server: asyncio.AbstractServer | None = None

    async def start(self) -> H2Upstream:
        self._server = await asyncio.start_unix_server(self._serve, str(self.path))
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        settings = {h2.SETTINGS_HEADER_TABLE_SIZE: self.table_size} if self.table_size is not None else {}
        writer.write(SettingsFrame(0, settings=settings).serialize())
        decoder, encoder, acked = Decoder(), Encoder(), False
        walker = h2.FrameWalker(frozenset(range(256)))
        preface = await reader.readexactly(len(h2.PREFACE))
        assert preface == h2.PREFACE
        block, count, open_requests = b"", 0, {}
        try:
            while chunk := await reader.read(65536):
                for frame in walker.feed(chunk):
                    if frame.type == h2.SETTINGS and not frame.flags & h2.FLAG_ACK:
                        writer.write(SettingsFrame(0, flags=["ACK"]).serialize())
                    elif frame.type == h2.SETTINGS and not acked:
                        # Acknowledged: the peer's encoder must keep within the size from now on
                        # (RFC 9113 §6.5.3), and hpack's decoder checks that it does.
                        acked = True
                        if self.table_size is not None:
                            decoder.max_allowed_table_size = self.table_size
                    elif frame.type in (h2.HEADERS, h2.CONTINUATION):
                        block += h2.header_block_fragment(frame)
                        count += 1
                        if frame.flags & h2.FLAG_END_HEADERS:
                            fields = [(k.decode("latin-1"), v.decode("latin-1"))
                                      for k, v in decoder.decode(block, raw=True)]
                            request = Request(frame.stream_id, block, count, fields,
                                              decoder.header_table._current_size, acked)
                            self.requests.append(request)
                            open_requests[frame.stream_id] = request
                            block, count = b"", 0
                        if frame.flags & h2.FLAG_END_STREAM and frame.type == h2.HEADERS:
                            self._answer(writer, encoder, open_requests.pop(frame.stream_id))
                    elif frame.type == h2.DATA and frame.stream_id in open_requests:
                        open_requests[frame.stream_id].body += frame.payload or b""
                        if frame.flags & h2.FLAG_END_STREAM:
                            self._answer(writer, encoder, open_requests.pop(frame.stream_id))
                    elif frame.type == h2.RST_STREAM:
                        open_requests.pop(frame.stream_id, None)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _answer(self, writer: asyncio.StreamWriter, encoder: Encoder, request: Request) -> None:
        if self.resize is not None and self.resize[0] == len(self.requests):
            writer.write(SettingsFrame(0, settings={h2.SETTINGS_HEADER_TABLE_SIZE: self.resize[1]}).serialize())
        path = dict(request.headers).get(":path", "")
        sid = request.stream_id
        if path.startswith("/runtime.") and not path.startswith(f"/runtime.{self.api}."):
            block = encoder.encode([(":status", "200"), ("content-type", "application/grpc"),
                                    ("grpc-status", "12"), ("grpc-message", "unknown service")])
            writer.write(HeadersFrame(sid, block, flags=["END_HEADERS", "END_STREAM"]).serialize())
            return
        head = encoder.encode([(":status", "200"), ("content-type", "application/grpc"),
                               ("x-served-path", path)])
        tail = encoder.encode([("grpc-status", "0"), ("x-trailer", f"n{len(self.requests) % 7}")])
        writer.write(HeadersFrame(sid, head, flags=["END_HEADERS"]).serialize()
                     + DataFrame(sid, request.body or b"\0\0\0\0\0").serialize()
                     + HeadersFrame(sid, tail, flags=["END_HEADERS", "END_STREAM"]).serialize())
