"""The backlog's repeated bodies, kept once: a relayed chunk's copy of a known body becomes a reference.

A flood of 26 KB `ListContainers` replies brings the same reply call after call, and every
copy of it used to wait in the backlog in full (recorder.spool): 64 MiB of budget held some
2,400 of them, a quarter of a second of the flood, so a recorder that got a little less CPU
than the relay for a moment skimmed (issue 16: 0.9-11% of such a flood lost, run to run),
while the same budget holds a whole 10 s flood of small calls. Each copy also went to the
spill file and back (two copies of every byte, and the file's blocks).

So the intake thread (recorder.intake) hands what it reads to a `Squeezer` before it goes
into the spool: in every CHUNK of at least `MIN_CHUNK` bytes it looks for the bodies the tap
last kept (`Known`, published by the recorder's thread from the tap's `LastBodies`), and where
the chunk's bytes equal one (compared in full) that stretch becomes a reference to it: the
chunk is then a SQUEEZED message, its pieces in order, literal or referenced, and the size of
the CHUNK it stands for (what the proxy is acknowledged). Nothing is inferred: every
reference was compared equal to the bytes it replaces, wherever the frames or chunks cut
them, so the tap is fed exactly the bytes the relay sent (`pieces`), and a body that changes
costs only the comparison. A body referenced from the backlog is held until the recorder has
handled every reference to it; once those no longer published pass `HELD_MAX` no new
references are made (memory stays bounded in bytes).

SQUEEZED is this process's own: it never crosses the link, only the spool.
"""

from __future__ import annotations

import logging
from typing import Final

from cri_proxy.model.link import CHUNK, CHUNK_HEAD, LENGTH
from cri_proxy.recorder.known import FIXED, SEGMENT, SQUEEZED, Known

__all__ = ["MIN_CHUNK", "Squeezer"]

log = logging.getLogger(__name__)

MIN_CHUNK: Final = 4096  # a smaller chunk holds no body worth a reference (wire.SHARE_MIN_BYTES)
MIN_REF: Final = 256  # a shorter stretch stays literal: a reference and the cut cost 24 bytes
_HEAD = CHUNK_HEAD.size
_PADDED, _STREAM = 0x8, 0x7FFFFFFF
_length, _chunk_head = LENGTH.unpack_from, CHUNK_HEAD.unpack_from


class Squeezer:
    """The intake thread's side: the link bytes read, with known bodies made references."""

    def __init__(self, known: Known) -> None:
        self.known = known
        self._due = 0  # bytes still to come of a message passed on as it is
        self._partial = b""  # the first bytes (under 4) of such a message's length, passed on already
        self._held: list[bytes | memoryview] = []  # the start of a message the read cut, until it is whole
        self._held_size = 0
        self._pending: dict[tuple[int, bool], tuple[int, bytes, int, int, int]] = {}  # a body a chunk's end cut
        self.saved = 0  # bytes the references took out of the backlog
        self.broken = False  # it failed once: what is read goes as it is from then on

    def squeeze(self, data: bytes | bytearray, end: int) -> list[bytes | memoryview] | None:
        """`data[:end]`, just read, as it goes into the backlog: None when it goes as it is.
        A bug here must not stop the recording: the bytes then go as they came (with the
        start of a message it held), and nothing is squeezed from then on."""
        if self.broken:
            return None
        held = list(self._held)
        try:
            return self._squeeze(data, end)
        except Exception:
            log.exception("the recorder's backlog stops keeping repeated bodies once (a bug); it records on")
            self.broken = True
            return [*held, memoryview(data)[:end]] if held else None

    def _squeeze(self, data: bytes | bytearray, end: int) -> list[bytes | memoryview] | None:
        pos = self._resume(data, end) if self._partial else 0
        if not self.known.current and not self._held:
            self._walk(data, pos, end, None)
            return None
        out: list[bytes | memoryview] = []
        if pos:
            out.append(memoryview(data)[:pos])
        if self._held:
            pos = self._complete(data, end, out)
            if pos < 0:
                return out
        self._walk(data, pos, end, out)
        return out

    def _resume(self, data: bytes | bytearray, end: int) -> int:
        """The length of a message passed on as it is, its first bytes in the last read: how
        much of `data` completes it (its bytes still due are `_due`)."""
        take = min(4 - len(self._partial), end)
        head = self._partial + bytes(data[:take])
        if len(head) < 4:
            self._partial = head
            return take
        self._partial = b""
        self._due = _length(head, 0)[0]  # the rest of it, its length read
        return take

    def _complete(self, data: bytes | bytearray, end: int, out: list[bytes | memoryview]) -> int:
        """The held message continued from `data`: where `data` goes on (-1: still not whole)."""
        view = memoryview(data)
        used = 0
        if self._held_size < 5:
            used = min(5 - self._held_size, end)
            self._hold(data, view, 0, used)
            if self._held_size < 5:
                return -1
        held = self._held
        head = held[0] if len(held[0]) >= 5 else b"".join(held)
        total, size = 4 + _length(head, 0)[0], self._held_size
        take = min(total - size, end - used)
        if head[4] != CHUNK or total - _HEAD < MIN_CHUNK or not self.known.current:
            out.extend(held)  # not one to squeeze after all: as it came
            out.append(view[used:used + take])
            self._due = total - size - take
            self._held, self._held_size = [], 0
            return used + take
        self._hold(data, view, used, used + take)
        if self._held_size < total:
            return -1
        whole = b"".join(held)  # the one copy (the spool would join a message cut between blocks)
        self._held, self._held_size = [], 0
        if not self._chunk(whole, 0, total, out):
            out.append(whole)
        return used + take

    def _hold(self, data: bytes | bytearray, view: memoryview, start: int, stop: int) -> None:
        """A piece of a message cut by the read, kept: a view of bytes read (they never
        change), a copy of the spill's buffer (it is read into again)."""
        self._held.append(view[start:stop] if type(data) is bytes else bytes(view[start:stop]))
        self._held_size += stop - start

    def _walk(self, data: bytes | bytearray, pos: int, end: int, out: list[bytes | memoryview] | None) -> None:
        """The messages of `data[pos:end]`, squeezed onto `out` where they can be (`out` None:
        only walked, nothing is looked for, and `data` goes as it is)."""
        if self._due:
            take = min(self._due, end - pos)
            self._due -= take
            if out is not None:
                out.append(memoryview(data)[pos:pos + take])
            pos += take
        verbatim = pos  # the bytes from here to `pos` go as they are
        while pos + 5 <= end:
            total = 4 + _length(data, pos)[0]
            if out is None or data[pos + 4] != CHUNK or total - _HEAD < MIN_CHUNK:
                if pos + total > end:
                    self._due = pos + total - end
                    pos = end
                    break
                pos += total
                continue
            if pos + total > end:
                break  # held below, until a later read completes it
            if self._chunk(data, pos, pos + total, out, verbatim):
                verbatim = pos + total
            pos += total
        if out is None:
            if pos < end:
                self._partial = bytes(data[pos:end])
            return
        if pos > verbatim:
            out.append(memoryview(data)[verbatim:pos])
        if pos < end:
            self._hold(data, memoryview(data), pos, end)

    def _chunk(self, data: bytes | bytearray, pos: int, stop: int, out: list[bytes | memoryview],
               verbatim: int | None = None) -> bool:
        """The CHUNK `data[pos:stop]` squeezed onto `out` (after `data[verbatim:pos]`, which
        goes as it is) when a known body is in it; False (`out` unchanged) when none is."""
        _, _, conn_id, from_client, wall, mono = _chunk_head(data, pos)
        key = (conn_id, bool(from_client))
        view = memoryview(data)
        found = Found(data, view, pos + _HEAD, stop)
        pending = self._pending.pop(key, None)
        if pending is not None:  # the body the last chunk of this direction ended inside
            if found.follow(*pending):
                self._pending[key] = found.pending
        self._look(found, key)
        if not found.counts or not self.known.take(found.counts):
            self._pending.pop(key, None)
            return False
        segments = found.segments
        if stop > found.literal:
            segments.append((0, found.literal, stop - found.literal))
        if verbatim is not None and pos > verbatim:
            out.append(view[verbatim:pos])
        self.saved += self._emit(out, view, conn_id, from_client, wall, mono, stop - pos, segments)
        return True

    def _look(self, found: Found, key: tuple[int, bool]) -> None:
        """The known bodies in the rest of the chunk, in order, onto `found`."""
        current = self.known.current
        data, stop, begin = found.data, found.stop, found.begin
        at = found.literal
        where = [data.find(needle, at, stop) for _, needle, _ in current]
        while True:
            best = -1
            for i, place in enumerate(where):
                if place >= 0 and (best < 0 or place < where[best]):
                    best = i
            if best < 0:
                return
            number, _, payload = current[best]
            place = where[best]
            left, stream = len(payload), -1  # unless a DATA frame's header says where its payload ends
            if place - 9 >= begin and data[place - 6] == 0 and not data[place - 5] & _PADDED:
                left = int.from_bytes(data[place - 9:place - 6], "big")
                stream = int.from_bytes(data[place - 4:place], "big") & _STREAM
            if found.follow(number, payload, 0, left, stream, place):
                self._pending[key] = found.pending
            for i, (_, other, _) in enumerate(current):  # each looked for again past what is taken
                if where[i] >= 0 and (i == best or where[i] < found.literal):
                    where[i] = data.find(other, max(where[i] + 1, found.literal), stop)

    @staticmethod
    def _emit(out: list[bytes | memoryview], view: memoryview, conn_id: int, from_client: int, wall: float,
              mono: float, original: int, segments: list[tuple[int, int, int]]) -> int:
        """The SQUEEZED message onto `out`: the bytes it saves against the CHUNK."""
        body = FIXED.size - 4 + sum(SEGMENT.size + (size if not number else 0) for number, _, size in segments)
        out.append(FIXED.pack(body, SQUEEZED, conn_id, from_client, wall, mono, original))
        for number, offset, size in segments:
            out.append(SEGMENT.pack(number, 0 if not number else offset, size))
            if not number:
                out.append(view[offset:offset + size])
        return original - 4 - body


class Found:
    """The stretches of one chunk's bytes found equal to known bodies, as segments."""

    __slots__ = ("begin", "counts", "data", "literal", "pending", "segments", "stop", "view")

    def __init__(self, data: bytes | bytearray, view: memoryview, begin: int, stop: int) -> None:
        self.data, self.view, self.begin, self.stop = data, view, begin, stop
        self.segments: list[tuple[int, int, int]] = []  # (id, offset, size); id 0: data[offset:offset + size]
        self.counts: dict[int, int] = {}
        self.literal = begin  # the literal bytes not in a segment yet begin here
        self.pending: tuple[int, bytes, int, int, int] = (0, b"", 0, 0, -1)

    def follow(self, number: int, payload: bytes, offset: int, left: int, stream: int, at: int | None = None) -> bool:
        """`payload[offset:]` compared with the bytes from `at` (the chunk's start: the body the
        last chunk ended inside), DATA frame by DATA frame: `left` payload bytes of the current
        frame are there, then a frame header of the same `stream` (a body longer than a frame:
        grpc-go's are 16 KiB) is passed over as literal bytes. What agrees becomes references;
        True when the chunk ends inside the body (`pending` says where, for the next chunk)."""
        data, view, stop = self.data, self.view, self.stop
        pos = self.begin if at is None else at
        size = len(payload)
        while True:
            if not left:  # the frame ended inside the body: the next one goes on with it
                if pos == stop:
                    break
                if pos + 9 > stop or data[pos + 3] != 0 or data[pos + 4] & _PADDED or \
                        stream != int.from_bytes(data[pos + 5:pos + 9], "big") & _STREAM:
                    return False
                left = int.from_bytes(data[pos:pos + 3], "big")
                pos += 9
                continue
            take = min(left, size - offset, stop - pos)
            if not take:
                break
            if not payload.startswith(view[pos:pos + take], offset):
                return False
            if take >= MIN_REF:
                if pos > self.literal:
                    self.segments.append((0, self.literal, pos - self.literal))
                self.segments.append((number, offset, take))
                self.counts[number] = self.counts.get(number, 0) + 1
                self.literal = pos + take
            pos, offset, left = pos + take, offset + take, left - take
            if offset == size:
                return False
        self.pending = (number, payload, offset, left, stream)
        return True
