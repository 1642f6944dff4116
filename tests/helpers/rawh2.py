"""A raw HTTP/2 gRPC client on a blocking unix socket, for tests that must choose how the
bytes are written (which write carries which frame, and when) or send what no gRPC
library would: floods, malformed frames, odd timing. Frames are built with hyperframe
and hpack, the same well-kept parsers the proxy relies on.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def request_headers(path: str) -> list[tuple[str, str]]:
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
            ("content-type", "application/grpc"), ("te", "trailers")]


def grpc_message(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def opening(path: str, stream_id: int = 1, encoder: Encoder | None = None) -> tuple[bytes, bytes]:
    """The preface, SETTINGS and a request's HEADERS; and the DATA that ends the request."""
    block = (encoder or Encoder()).encode(request_headers(path))
    head = PREFACE + SettingsFrame(0).serialize() + HeadersFrame(stream_id, block, flags=["END_HEADERS"]).serialize()
    return head, DataFrame(stream_id, grpc_message(b"hi"), flags=["END_STREAM"]).serialize()


@dataclass
class Reply:
    """What the server sent on one stream, and how the connection ended."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    data: bytes = b""
    ended: bool = False
    goaway: int | None = None  # the error code of a GOAWAY, when one came

    @property
    def grpc_status(self) -> str | None:
        return dict(self.headers).get("grpc-status")


class RawClient:
    """One connection; `read_reply` reads frames until the stream ends or the socket does."""

    def __init__(self, path: str, timeout: float = 5.0, ack_settings: bool = True) -> None:
        self.ack_settings = ack_settings
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.decoder = Decoder()
        # The peer's SETTINGS_HEADER_TABLE_SIZE, as acknowledged: a compliant client's encoder
        # keeps to it from its next block on (RFC 7541 4.2), see `encode`.
        self.table_size: int | None = None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def encode(self, encoder: Encoder, headers: list[tuple[str, str]]) -> bytes:
        """A header block from `encoder` (this connection's), shrunk first to the table size
        the peer set and this client acknowledged: the size update a compliant encoder sends."""
        if self.table_size is not None and self.table_size < encoder.header_table_size:
            encoder.header_table_size = self.table_size
        return bytes(encoder.encode(headers))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _frame(self) -> Frame | None:
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
        frame.parse_body(memoryview(self.buf[9:9 + length]))
        self.buf = self.buf[9 + length:]
        return frame

    def read_reply(self, stream_id: int = 1) -> Reply:
        reply = Reply()
        while not reply.ended:
            frame = self._frame()
            if frame is None:
                return reply
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags and self.ack_settings:
                self.table_size = frame.settings.get(SettingsFrame.HEADER_TABLE_SIZE, self.table_size)
                self.send(SettingsFrame(0, flags=["ACK"]).serialize())
            elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                self.send(PingFrame(0, frame.opaque_data, flags=["ACK"]).serialize())
            elif isinstance(frame, GoAwayFrame):
                reply.goaway = frame.error_code
                if frame.error_code or stream_id < 0:
                    return reply
            elif isinstance(frame, (HeadersFrame, ContinuationFrame)) and frame.stream_id == stream_id:
                reply.headers += [(k.decode(), v.decode()) for k, v in self.decoder.decode(frame.data, raw=True)]
                reply.ended = "END_STREAM" in frame.flags
            elif isinstance(frame, DataFrame) and frame.stream_id == stream_id:
                reply.data += frame.data
                reply.ended = "END_STREAM" in frame.flags
        return reply


def split_call(path: str, sock_path: str, gap: float, timeout: float = 5.0, ack_settings: bool = True) -> Reply:
    """One call on a new connection: HEADERS in one write, DATA `gap` seconds later in another."""
    head, tail = opening(path)
    with RawClient(sock_path, timeout, ack_settings) as client:
        client.send(head)
        deadline = time.perf_counter() + gap
        while time.perf_counter() < deadline:
            pass  # sleep() cannot wait a tenth of a millisecond reliably
        client.send(tail)
        return client.read_reply()


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """Any frame, even one hyperframe refuses to build (a HEADERS frame on stream 0...)."""
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream_id.to_bytes(4, "big") + payload


def hello() -> bytes:
    """What every client sends first: the preface and an empty SETTINGS frame."""
    return PREFACE + SettingsFrame(0).serialize()


def drain(client: RawClient) -> Reply:
    """Read until the server sends a GOAWAY with an error or closes; the socket's errors count as closed."""
    try:
        return client.read_reply(stream_id=-1)
    except OSError:
        return Reply()


def watch_goaway(client: RawClient) -> int | None:
    """Read frames without answering any until a GOAWAY (its error code) or the end of the
    connection (None); safe in a thread of its own while another one writes."""
    try:
        while (frame := client._frame()) is not None:
            if isinstance(frame, GoAwayFrame):
                return int(frame.error_code)
    except OSError:
        pass
    return None


def flood(sock_path: str, opening: bytes, frame: bytes, limit: int, batch: int = 100) -> tuple[int | None, int]:
    """`opening`, then `frame` over and over (up to `limit` of them) until the server's GOAWAY:
    its error code (None if it never came) and how many frames went out."""
    with RawClient(sock_path, timeout=10) as client:
        client.send(opening)
        code: list[int | None] = []
        watcher = threading.Thread(target=lambda: code.append(watch_goaway(client)))
        watcher.start()
        sent = 0
        try:
            while watcher.is_alive() and sent < limit:
                client.send(frame * batch)
                sent += batch
        except OSError:
            pass  # the server hung up
        client.sock.shutdown(socket.SHUT_WR)
        watcher.join(30)
    return (code[0] if code else None), sent


class RawUpstream:
    """A raw HTTP/2 "server" on a unix socket: to each connection it sends `greeting`, then
    it reads, noting the types of the frames it receives, until the other end closes."""

    def __init__(self, path: str, greeting: bytes) -> None:
        self.greeting = greeting
        self.kinds: list[int] = []
        self.got_headers = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            try:
                conn.sendall(self.greeting)
                while chunk := conn.recv(65536):
                    buf += chunk
                    if buf.startswith(PREFACE):
                        buf = buf[len(PREFACE):]
                    while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                        self.kinds.append(buf[3])
                        if buf[3] == 0x1:
                            self.got_headers.set()
                        buf = buf[9 + int.from_bytes(buf[:3], "big"):]
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
