"""The relayed bytes without message bodies: what the recorder process gets when nothing
there needs them (`--metrics-listen` without `--db` or `--otlp-endpoint`; see
`RecordConfig.needs_bodies`).

Metrics count calls, statuses, durations and message bytes; they never look inside a
message. So instead of copying every reply to the recorder process (a 1 MB stats reply is
1 MB more through the link and through the recorder's tap), the relay ships the server's
frames as they are except DATA, whose payload it replaces by a summary
(`link.lean_data`): how many gRPC messages the frame completes and their bytes (the
5-byte prefixes excluded, as the recorder counts them), or that its padding is malformed.
A small frame of one whole message (PASS_WHOLE) goes as it is: cheaper than its summary.
The client's bytes go whole: CRI requests are small (the large bodies are replies: stats,
lists, exec output), and walking them would cost the relay more than copying them.
Header blocks, SETTINGS, RST_STREAM, GOAWAY... pass whole, so the recorder's HPACK state,
calls and statuses are exactly what the full bytes would give.

To count messages the walker follows each stream's gRPC framing across DATA frames (a
prefix or a message cut by a frame boundary), keeping state only for a stream whose frame
ended inside a message (at most MAX_CUT of them: a client's reset, which this walker does
not see, leaves the stream's state behind). A summary goes out when its DATA frame's last byte has been
relayed, which is when the recorder would have completed the same messages; a frame that
completes none (the middle of a large reply) and ends nothing is left out altogether.
On the relay's plain path this walk is the relay's own too (`feed` with `track`, in place of
`FrameWalker.track`): each upstream chunk is walked once (proxy.relaypair).
"""

from __future__ import annotations

import struct

from cri_proxy.h2 import frames as h2
from cri_proxy.h2.constants import FRAME_HEADER
from cri_proxy.h2.walker import FrameWalker
from cri_proxy.model import link

_HEADER = FRAME_HEADER.unpack_from
# The header and the 4 bytes after the payload's first: for a DATA frame the length of the gRPC
# message it begins, read in the same unpack (most frames have those 5 bytes; any other kind
# reads bytes it ignores).
_HEADER_AND_SIZE = struct.Struct(">BHBBIxI").unpack_from
_MASK = 0x7FFFFFFF
_DATA, _HEADERS, _RST, _CONTINUATION = h2.DATA, h2.HEADERS, h2.RST_STREAM, h2.CONTINUATION
_PADDED, _END, _END_HEADERS = h2.FLAG_PADDED, h2.FLAG_END_STREAM, h2.FLAG_END_HEADERS
_SETTINGS, _PING = h2.SETTINGS, h2.PING
_UNTRACKED: set[int] = set()  # the open calls of a walk the relay does not track with: stays empty
_summary = link.lean_data
MAX_CUT = 1024  # streams whose state is kept (far more than a connection has open at once)
_pack = link.LEAN_DATA_FRAME.pack  # lean_data without the call, for the common frame
_SUMMARY_SIZE = link.LEAN_SUMMARY.size
# An unpadded DATA frame holding one whole message of at most this many bytes (prefix included)
# goes as it is: left in the chunk, it costs the relay no slice, summary or join (a chunk of
# small replies is passed on untouched), and the recorder no more than its summary would
# (tap.RecordingTap counts it from its length). Never one of the summary's own length, which
# is how the recorder tells the two apart.
PASS_WHOLE = 1024


class _Data:
    """A DATA frame whose payload is still arriving."""

    __slots__ = ("stream_id", "flags", "left", "pad", "content", "bad", "messages", "size")

    def __init__(self, stream_id: int, flags: int, length: int) -> None:
        self.stream_id = stream_id
        self.flags = flags
        self.left = length  # payload bytes still to come
        self.pad = -1 if flags & _PADDED else 0  # -1: the pad length byte is still to come
        self.content = length if not flags & _PADDED else 0  # content bytes still to come
        self.bad = bool(flags & _PADDED) and length == 0  # PADDED without a pad length
        self.messages = 0
        self.size = 0


class LeanWalker:
    """One direction of one connection: `feed(chunk)` returns what the recorder gets of it."""

    __slots__ = ("streams", "_head", "_verbatim", "_ends", "_data", "at_boundary", "in_block")

    def __init__(self) -> None:
        # Per stream whose last DATA frame ended inside a gRPC message: the message's body
        # bytes still due, its length, and the prefix bytes read so far (when cut inside it).
        self.streams: dict[int, tuple[int, int, bytes]] = {}
        self._head = b""  # the start of a frame header cut by the chunk's end
        self._verbatim = 0  # bytes of a frame passed as they are, still to come
        self._ends = 0  # the stream that frame ends (HEADERS with END_STREAM, RST_STREAM), once whole
        self._data: _Data | None = None
        self.at_boundary = True  # the next output begins a frame
        self.in_block = False  # between a HEADERS frame and its END_HEADERS

    def feed(self, chunk: bytes, track: FrameWalker | None = None, open_streams: set[int] = _UNTRACKED) -> bytes:
        """This chunk's frames with DATA payloads summarised (b"" when nothing is due yet).

        With `track` (the relay's plain walk of these bytes, proxy.relaypair), this walk is the
        relay's too: it keeps `open_streams` and the walker's `at_boundary`, `in_block`, `walked`
        and `control` as `FrameWalker.track` would, which is then not run (one walk per chunk).
        """
        out: list[bytes] = []
        fed, control = len(chunk), 0
        pos = mark = 0  # mark: where the bytes passed as they are begin
        if self._verbatim or self._head or self._data is not None:  # a frame cut by the last read
            self.at_boundary = not self._verbatim
            if self._head:
                chunk = self._head + chunk  # rare: a frame header cut by a read
                self._head = b""
            if self._verbatim:
                pos = min(self._verbatim, len(chunk))
                self._verbatim -= pos
                if self._ends and not self._verbatim:
                    open_streams.discard(self._ends)
                    self._ends = 0
            elif self._data is not None:
                pos = mark = self._payload(chunk, 0, len(chunk), out, open_streams)
        else:
            self.at_boundary = True
        end = len(chunk)
        streams = self.streams
        while pos < end:
            if end - pos >= 14:
                high, low, kind, flags, sid, size = _HEADER_AND_SIZE(chunk, pos)
            elif end - pos >= 9:
                high, low, kind, flags, sid = _HEADER(chunk, pos)
                size = -10  # not in this chunk (size + 5 matches no length): the general walk reads it
            else:
                self._head = chunk[pos:]
                break
            nxt = pos + 9 + (high << 16 | low)
            if kind == _DATA:
                length = nxt - pos - 9
                # The commonest frame, inline: one whole message, nothing pending on its stream,
                # small (PASS_WHOLE): passed as it is.
                if size + 5 == length and nxt <= end and not flags & _PADDED \
                        and not (streams and sid & _MASK in streams):
                    if flags & _END:
                        open_streams.discard(sid & _MASK)
                    if length <= PASS_WHOLE and length != _SUMMARY_SIZE:
                        pos = nxt
                        continue
                    if mark < pos:
                        out.append(chunk[mark:pos])
                    out.append(_pack(0, _SUMMARY_SIZE, _DATA, flags & _END, sid & _MASK, False, 1, size))
                    pos = mark = nxt
                    continue
                sid &= _MASK
                if nxt <= end and not flags & _PADDED:
                    if mark < pos:
                        out.append(chunk[mark:pos])
                        mark = pos
                    done = self._whole(chunk, pos, sid, flags, length)
                    if done is not None:
                        if flags & _END:
                            open_streams.discard(sid)
                        if done:
                            out.append(done)
                        pos = mark = nxt
                        continue
                if mark < pos:
                    out.append(chunk[mark:pos])
                self._data = _Data(sid, flags, length)
                pos = mark = self._payload(chunk, pos + 9, end, out, open_streams)
                continue
            if kind == _HEADERS:
                self.in_block = not flags & _END_HEADERS
                if flags & _END:  # trailers: once a call, so inline
                    sid &= _MASK
                    if streams:
                        streams.pop(sid, None)
                    if nxt > end:
                        self._ends = sid
                    else:
                        open_streams.discard(sid)
            elif kind == _CONTINUATION:
                self.in_block = not flags & _END_HEADERS
            elif kind == _RST:
                self._ended(sid & _MASK, nxt > end, open_streams)
            elif kind == _SETTINGS or kind == _PING:
                control += nxt - pos
            if nxt > end:
                self._verbatim = nxt - end
                pos = end
                break
            pos = nxt
        if track is not None:
            track.walked += fed
            if control:
                track.control += control
            track.at_boundary = not (self._verbatim or self._head or self._data is not None)
            track.in_block = self.in_block  # set as a header begins, not ends: the same once at a boundary
        if not out:
            return chunk[mark:pos]  # the chunk itself when it all goes as it is (a bytes slice of all of it)
        if mark < pos:
            out.append(chunk[mark:pos])
        return out[0] if len(out) == 1 else b"".join(out)

    def _whole(self, chunk: bytes, pos: int, sid: int, flags: int, length: int) -> bytes | None:
        """The summary of an unpadded DATA frame whole in `chunk` at `pos`, in the common shapes:
        one whole message, the start of a longer one, the middle or the end of one. None for
        any other (several messages, a prefix cut by a frame): the general walk reads those."""
        streams = self.streams
        state = streams.get(sid) if streams else None
        end = flags & _END
        if state is None:
            if length < 5:
                return self._nothing(end, sid) if not length else None
            size = int.from_bytes(chunk[pos + 10:pos + 14], "big")
            if size + 5 == length:
                return _pack(0, _SUMMARY_SIZE, _DATA, end, sid, False, 1, size)
            if size + 5 < length:
                return None
            if not end:
                self._cut(sid, size + 5 - length, size, b"")
            return self._nothing(end, sid)
        need, size, prefix = state
        if prefix or need < length:
            return None
        if need == length:
            del streams[sid]
            return _pack(0, _SUMMARY_SIZE, _DATA, end, sid, False, 1, size)
        if end:
            del streams[sid]
        else:
            streams[sid] = (need - length, size, b"")
        return self._nothing(end, sid)

    def _nothing(self, end: int, sid: int) -> bytes:
        """The summary of a frame that completes no message: none at all, unless it ends the
        stream or interrupts a header block (the recorder must see both)."""
        return _pack(0, _SUMMARY_SIZE, _DATA, end, sid, False, 0, 0) if end or self.in_block else b""

    def _payload(self, chunk: bytes, pos: int, end: int, out: list[bytes], open_streams: set[int]) -> int:
        """Walk the open DATA frame's payload in chunk[pos:end]; the summary once it is whole."""
        d = self._data
        assert d is not None
        take = min(d.left, end - pos)
        stop = pos + take
        d.left -= take
        if d.pad < 0 and pos < stop:
            d.pad = chunk[pos]
            pos += 1
            if d.pad >= d.left + 1 + (stop - pos):  # payload[0] >= len(payload): malformed
                d.bad = True
            else:
                d.content = d.left + (stop - pos) - d.pad
        content = min(d.content, stop - pos)
        if content and not d.bad:
            self._messages(d, chunk, pos, pos + content)
        d.content -= content
        if not d.left:
            self._data = None
            if d.flags & _END:
                self.streams.pop(d.stream_id, None)
                open_streams.discard(d.stream_id)
            if d.messages or d.bad or d.flags & _END or self.in_block:
                out.append(_summary(d.flags & _END, d.stream_id, d.bad, d.messages, d.size))
        return stop

    def _messages(self, d: _Data, chunk: bytes, pos: int, stop: int) -> None:
        """Count the gRPC messages completed in chunk[pos:stop], content of stream d.stream_id."""
        need, size, prefix = self.streams.pop(d.stream_id, (0, 0, b""))
        while pos < stop:
            if need:
                took = min(need, stop - pos)
                need -= took
                pos += took
                if not need:
                    d.messages += 1
                    d.size += size
                continue
            if prefix or stop - pos < 5:
                took = min(5 - len(prefix), stop - pos)
                prefix += chunk[pos:pos + took]
                pos += took
                if len(prefix) < 5:
                    break
                head, prefix = prefix, b""
            else:
                head = chunk[pos:pos + 5]
                pos += 5
            size = int.from_bytes(head[1:5], "big")
            need = size
            if not size:
                d.messages += 1  # an empty message is complete with its prefix
        if need or prefix:
            self._cut(d.stream_id, need, size, prefix)

    def _cut(self, stream_id: int, need: int, size: int, prefix: bytes) -> None:
        """Stream `stream_id`'s last frame ended inside a message."""
        streams = self.streams
        if len(streams) >= MAX_CUT and stream_id not in streams:
            del streams[next(iter(streams))]  # the oldest: a stream its client reset long ago
        streams[stream_id] = (need, size, prefix)

    def _ended(self, stream_id: int, later: bool, open_streams: set[int]) -> None:
        """The stream ends: for the relay's open calls now, or once its frame is whole (`later`)."""
        if self.streams:
            self.streams.pop(stream_id, None)
        if later:
            self._ends = stream_id
        else:
            open_streams.discard(stream_id)
