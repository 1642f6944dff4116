"""The client's bytes on a translating connection, once routing has nothing left to decide.

Like the runtime's side (cri_proxy.proxy.responses), the client's bytes go on in runs, as
they came, walking only the 9-byte frame headers; nothing is built for a DATA, PING or
WINDOW_UPDATE frame that passes. What is taken out of the run:
- each header block the translator does not let through as it is: it decodes every block
  and writes it again (or answers, or drops it) in its place. A block in one HEADERS frame
  wholly inside the chunk (nearly every request's) is read where it lies, and stays in the
  run when the translator lets it through; one across frames or chunks is gathered first;
- DATA of a request being checked, and the connection's WINDOW_UPDATE while the proxy owes
  the runtime's credit back: handed whole to the translator;
- any frame of a stream the proxy answered itself: dropped, its DATA's connection window
  given back to the client.
A chunk of nothing but DATA, WINDOW_UPDATE, SETTINGS, PING and header blocks the translator
settled before with nothing to decide goes on as on the plain relay, the translator not asked
(`_passes`), as its one cache (`rewritten`: same bytes, same tables and limits, same rules)
says: on a connection read only for fault rules, blocks it let pass, the chunk whole; on a
rewriting one, blocks it re-encoded leaving both tables as they were, each swapped for the
bytes it became, in a frame of its own.
Everything bound for the runtime from one chunk leaves in one write (the route's `batch`),
in order. The tap sees the client's bytes as the client sent them, since its HPACK decoder
follows the client's encoder. The framing rules routing enforces (cri_proxy.proxy.headerblock)
hold here too: a breach ends the connection with GOAWAY.
"""

from __future__ import annotations

from typing import Final

from cri_proxy.h2 import frames as h2
from cri_proxy.h2.constants import FRAME_HEADER
from cri_proxy.h2.frames import (
    DATA,
    FLAG_END_HEADERS,
    HEADERS,
    PING,
    SETTINGS,
    WINDOW_UPDATE,
)
from cri_proxy.h2.hpack_decoder import HPACKDecodingError
from cri_proxy.proxy.headerblock import MAX_BLOCK, BadFrame, refuse, too_large
from cri_proxy.proxy.responses import STREAM_MASK, chunk_tail
from cri_proxy.proxy.seams import RequestTranslator, TranslatedRoute

_HEADER: Final = FRAME_HEADER.unpack_from
PASS, DROP, TAKE = 0, 1, 2  # what becomes of the current frame
# HEADERS flags that, but for END_HEADERS, keep a frame's payload from being its block as it is.
_WHOLE_MASK: Final = h2.FLAG_END_HEADERS | h2.FLAG_PADDED | h2.FLAG_PRIORITY
_SENT_FLAGS: Final = h2.FLAG_END_HEADERS | h2.FLAG_END_STREAM  # those a rewritten block's frame keeps
_FRAME_HEAD: Final = FRAME_HEADER.pack
_UNKNOWN: Final = (b"", True)  # a block the translator did not keep, as `_passes` looks it up


class RequestRelay:
    """The client-to-runtime side of one translating connection (see the module's docstring)."""

    __slots__ = ("route", "conn", "translator", "skip", "head", "mode", "frame", "block", "block_stream",
                 "block_end", "at_boundary")

    def __init__(self, route: TranslatedRoute, translator: RequestTranslator) -> None:
        self.route = route
        self.conn = route._conn()
        self.translator = translator
        self.skip = 0  # payload bytes of the current frame still to come
        self.head = b""  # a frame header split across chunks
        self.mode = PASS
        self.frame: bytearray | None = None  # the current frame, when it is taken whole
        self.block = bytearray()  # the header block being read
        self.block_stream = 0  # its stream, 0 when none is open
        self.block_end = False  # its HEADERS frame ended the stream
        self.at_boundary = True

    def from_client(self, data: bytes) -> None:
        conn, route, translator = self.conn, self.route, self.translator
        boundary = self.at_boundary
        if translator.swapping and self.mode == PASS and not self.head and self._passes(data):
            if conn.tap is not None:
                conn.feed_tap(True, data, boundary)
                translator.show_tap()  # notes of a delayed call released since
            return
        batch: list[bytes] = []
        route.batch = batch
        try:
            self._feed(data, batch)
        except (BadFrame, HPACKDecodingError) as exc:
            refuse(conn, exc)
            return
        finally:
            route.batch = None
        if batch:
            conn.send_upstream(b"".join(batch))
        if conn.tap is not None:
            conn.feed_tap(True, data, boundary)
            self.translator.show_tap()
            if route.answers:
                answers, route.answers = b"".join(route.answers), []
                conn.feed_tap(False, answers, True)

    def _passes(self, data: bytes) -> bool:
        """Whether the chunk goes on with nothing to decide (see the module's docstring), each block
        in one frame and opening a new stream. If so, the chunk is sent (each rewritten block
        swapped in), then its frames counted as _feed would; if not, nothing was changed and
        _feed takes the chunk. One walk and no call of its own: every warm chunk takes it."""
        translator = self.translator
        if translator.checking or translator.held or translator.owed:
            return False
        end = len(data)
        pos = self.skip
        if pos >= end:
            return False  # within one frame's payload: _feed's first test
        rewritten, swap, hijacked = translator.rewritten, translator.rewriting, self.route.hijacked
        last = translator.last_stream
        opened: list[int] = []
        parts: list[bytes] = []  # the chunk's bytes up to `keep`, once a block was swapped
        keep = 0
        while pos + 9 <= end:
            high, low, kind, flags, sid = _HEADER(data, pos)
            nxt = pos + 9 + (high << 16 | low)
            if kind == DATA or kind == WINDOW_UPDATE:
                if hijacked and sid & STREAM_MASK in hijacked:
                    return False
            elif kind == HEADERS:
                if nxt > end or flags & _WHOLE_MASK != FLAG_END_HEADERS:
                    return False
                sid &= STREAM_MASK
                if sid <= last:
                    return False
                block, call = rewritten.get(data[pos + 9:nxt], _UNKNOWN)
                if call is not None:  # not kept, or kept with its call to decide
                    return False
                if swap:  # (on the identity path each block is kept as itself)
                    if keep < pos:
                        parts.append(data[keep:pos])
                    size = len(block)  # the frame the translator would send (Translator._send)
                    parts.append(_FRAME_HEAD(size >> 16, size & 0xFFFF, HEADERS, flags & _SENT_FLAGS, sid))
                    parts.append(block)
                    keep = nxt
                last = sid
                opened.append(sid)
            elif kind != SETTINGS and kind != PING:
                return False
            pos = nxt
        if pos < end:
            return False  # a frame header cut short: _feed keeps it for the next chunk
        if parts:
            if keep < end:
                parts.append(data[keep:])
            self.conn.send_upstream(b"".join(parts))
        else:
            self.conn.send_upstream(data)
        if opened:
            self.conn.open_streams.update(opened)
            translator.last_stream = last
        self.skip = pos - end
        self.at_boundary = not self.skip
        return True

    def _feed(self, data: bytes, out: list[bytes]) -> None:
        if self.head:
            data, self.head = self.head + data, b""
        end = len(data)
        keep = 0  # where the run of bytes that pass as they are begins
        pos = self.skip
        if pos:
            keep = self._rest(data, out)
            if keep < 0:
                return
        translator = self.translator
        hijacked, checking, held = self.route.hijacked, translator.checking, translator.held
        while pos + 9 <= end:
            high, low, kind, flags, sid = _HEADER(data, pos)
            length = high << 16 | low
            sid &= 0x7FFFFFFF
            start, nxt = pos, pos + 9 + length
            # The frames that pass, tested first as _decide would decide them: most frames are these.
            if kind == h2.DATA:
                if sid not in hijacked and sid not in checking and sid not in held and not self.block_stream:
                    pos = nxt
                    continue
            elif kind == h2.WINDOW_UPDATE:
                if (sid not in hijacked if sid else not translator.owed) and not self.block_stream:
                    pos = nxt
                    continue
            elif kind == h2.HEADERS and flags & _WHOLE_MASK == h2.FLAG_END_HEADERS and nxt <= end and sid \
                    and not self.block_stream:
                # A whole block in one frame of this chunk, the common case: read in place.
                if length > MAX_BLOCK:
                    raise too_large(sid)
                mark = len(out)
                if not translator.block(sid, bool(flags & h2.FLAG_END_STREAM), data[start + 9:nxt]):
                    if keep < start:  # the run before it goes ahead of what replaces it
                        out.insert(mark, data[keep:start])
                    keep = nxt
                pos = nxt
                continue
            self.mode = self._decide(kind, flags, sid, length)
            if self.mode != PASS:
                if keep < start:
                    out.append(data[keep:start])
                keep = min(nxt, end)
                if self.mode == TAKE:
                    self.frame = bytearray(data[start:keep])
            pos = nxt
            if pos <= end:
                self._complete()
        self.skip, stop, self.head = chunk_tail(data, pos)
        if keep < stop:
            out.append(data[keep:stop])
        self.at_boundary = not self.skip

    def _rest(self, data: bytes, out: list[bytes]) -> int:
        """The chunk opens with the rest of the frame the last one cut (`skip` bytes of it), taken
        or passed: where the run that passes begins after it, or -1 when the frame goes on past
        this chunk too (the chunk sent, or taken, whole)."""
        stop = min(self.skip, len(data))
        self.skip -= stop
        keep = 0
        if self.mode != PASS:
            self._take(data[:stop])
            keep = stop
        if self.skip:
            if self.mode == PASS:
                out.append(data)
            self.at_boundary = False
            return -1
        self._complete()
        return keep

    def _decide(self, kind: int, flags: int, sid: int, length: int) -> int:
        """What becomes of a frame, from its header (the framing checks of proxy.headerblock)."""
        if kind == h2.HEADERS or kind == h2.CONTINUATION:
            if sid == 0:
                raise BadFrame(h2.ERR_PROTOCOL, "header frame on stream 0")
            if kind == h2.HEADERS:
                if self.block_stream:
                    raise BadFrame(h2.ERR_PROTOCOL, f"HEADERS on stream {sid} inside the header block of "
                                                    f"stream {self.block_stream}")
                self.block_stream, self.block_end = sid, bool(flags & h2.FLAG_END_STREAM)
            elif sid != self.block_stream:
                raise BadFrame(h2.ERR_PROTOCOL, f"CONTINUATION on stream {sid} without a header block open "
                                                "on that stream")
            if len(self.block) + length > MAX_BLOCK:
                raise too_large(sid)
            return TAKE
        if self.block_stream:
            raise BadFrame(h2.ERR_PROTOCOL, f"frame of type {kind} on stream {sid} inside the header block "
                                            f"of stream {self.block_stream}")
        if sid and sid in self.route.hijacked:
            if kind == h2.DATA and length:
                self.conn.inject_to_client(h2.window_update_frame(0, length))  # the runtime never sees it
            return DROP
        translator = self.translator
        if kind == h2.DATA and (sid in translator.checking or sid in translator.held) \
                or kind == h2.WINDOW_UPDATE and not sid and translator.owed:
            return TAKE
        if kind == h2.RST_STREAM:
            translator.checking.pop(sid, None)
            self.conn.open_streams.discard(sid)
            if sid in translator.held:
                return TAKE  # a delayed stream's held DATA is dropped with it
        return PASS

    def _take(self, payload: bytes) -> None:
        if self.mode == TAKE and self.frame is not None:
            self.frame += payload

    def _complete(self) -> None:
        """The current frame is whole: a taken one goes to the translator."""
        mode, raw, self.mode, self.frame = self.mode, self.frame, PASS, None
        if mode != TAKE or raw is None:
            return
        kind, flags, sid = raw[3], raw[4], int.from_bytes(raw[5:9], "big") & 0x7FFFFFFF
        frame = h2.Frame(kind, flags, sid, len(raw) - 9, bytes(raw[9:]), bytes(raw))
        if kind == h2.HEADERS or kind == h2.CONTINUATION:
            try:
                self.block += h2.header_block_fragment(frame)
            except h2.FrameError as exc:
                raise BadFrame(h2.ERR_PROTOCOL, str(exc)) from None
            if flags & h2.FLAG_END_HEADERS:
                block, stream_id, end_stream = bytes(self.block), self.block_stream, self.block_end
                self.block, self.block_stream = bytearray(), 0
                if self.translator.block(stream_id, end_stream, block):
                    self.translator.send_as_sent(stream_id, end_stream, block)
        elif not self.translator.client_frame(frame):
            self.route.out(frame.raw or b"")
