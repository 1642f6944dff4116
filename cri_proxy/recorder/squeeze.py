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

import struct
import threading
from typing import Final, Protocol

from cri_proxy.model.link import CHUNK, CHUNK_HEAD, LENGTH

__all__ = ["HELD_MAX", "MIN_CHUNK", "SQUEEZED", "Known", "Squeezer", "pieces"]

SQUEEZED: Final = 40  # a CHUNK with references (never on the link: the link's kinds are below 32)
FIXED: Final = struct.Struct("<IBIBddI")  # length, kind, conn_id, from_client, wall, mono, the CHUNK's size
SEGMENT: Final = struct.Struct("<III")  # body id (0: literal, its bytes follow), offset in the body, size
MIN_CHUNK: Final = 4096  # a smaller chunk holds no body worth a reference (wire.SHARE_MIN_BYTES)
MIN_REF: Final = 256  # a shorter stretch stays literal: a reference and the cut cost 24 bytes
NEEDLE: Final = 32  # a body is looked for by its first bytes, then compared in full
HELD_MAX: Final = 8 << 20  # bodies no longer published, held for the backlog's references
_HEAD = CHUNK_HEAD.size
_PADDED, _STREAM = 0x8, 0x7FFFFFFF
_length, _chunk_head, _segment = LENGTH.unpack_from, CHUNK_HEAD.unpack_from, SEGMENT.unpack_from


class Bodies(Protocol):
    """What `Known.publish` reads (wire.LastBodies)."""

    version: int

    def values(self) -> list[bytes]: ...


class Known:
    """The bodies references may name, by id; shared by the intake thread (which references
    them) and the recorder's (which publishes them and handles the references)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: dict[int, bytes] = {}  # id -> a DATA payload: gRPC prefix and body
        self.refs: dict[int, int] = {}  # id -> references in the backlog
        # What the squeezer looks for: (id, needle, payload); replaced whole, never changed.
        self.current: tuple[tuple[int, bytes, bytes], ...] = ()
        self.held = 0  # bytes of bodies no longer published but still referenced
        self._ids: dict[int, tuple[bytes, int]] = {}  # id() of a published tap body -> (it, our id)
        self._published: set[int] = set()
        self._next = 1
        self._version = -1

    def publish(self, bodies: Bodies) -> None:
        """The recorder's thread: the tap's last bodies are what is looked for from now on."""
        if bodies.version == self._version:
            return
        self._version = bodies.version
        ids: dict[int, tuple[bytes, int]] = {}
        current = []
        with self.lock:
            for body in bodies.values():
                known = self._ids.get(id(body))
                if known is None or known[0] is not body:
                    payload = b"\x00" + len(body).to_bytes(4, "big") + body  # uncompressed, as sent
                    known = (body, self._next)
                    self.bodies[self._next] = payload
                    self._next += 1
                ids[id(body)] = known
                payload = self.bodies[known[1]]
                current.append((known[1], payload[:NEEDLE], payload))
            for key, (_, number) in self._ids.items():
                if key not in ids:
                    self._retire(number)
            self._ids = ids
            self._published = {number for _, number in ids.values()}
            self.current = tuple(current)

    def _retire(self, number: int) -> None:
        """A body no longer published: dropped, or held while the backlog references it."""
        if self.refs.get(number):
            self.held += len(self.bodies[number])
        else:
            del self.bodies[number]

    def take(self, counts: dict[int, int]) -> bool:
        """The intake thread: `counts` references made (id -> how many); False when too much
        is held already (then none is made)."""
        with self.lock:
            if self.held > HELD_MAX or any(number not in self.bodies for number in counts):
                return False  # too much held, or a body retired since it was looked for
            refs = self.refs
            for number, count in counts.items():
                refs[number] = refs.get(number, 0) + count
            return True

    def release(self, numbers: list[int]) -> None:
        """The recorder's thread: these references are handled."""
        published = self._published
        with self.lock:
            refs = self.refs
            for number in numbers:
                left = refs[number] - 1
                if left:
                    refs[number] = left
                    continue
                del refs[number]
                if number not in published:
                    self.held -= len(self.bodies.pop(number))


def pieces(known: Known, view: memoryview, start: int, stop: int) -> tuple[list[bytes | memoryview], list[int]]:
    """A SQUEEZED body `view[start:stop]` as the CHUNK bytes it stands for, piece by piece,
    and the ids it references (to `release` once handled)."""
    pos = start + FIXED.size - 5
    bodies = known.bodies
    out: list[bytes | memoryview] = []
    numbers: list[int] = []
    while pos < stop:
        number, offset, size = _segment(view, pos)
        pos += SEGMENT.size
        if not number:
            out.append(view[pos:pos + size])
            pos += size
            continue
        numbers.append(number)
        payload = bodies[number]
        out.append(payload if size == len(payload) else memoryview(payload)[offset:offset + size])
    return out, numbers


class Squeezer:
    """The intake thread's side: the link bytes read, with known bodies made references."""

    def __init__(self, known: Known) -> None:
        self.known = known
        self._due = 0  # bytes still to come of a message passed on as it is
        self._partial = b""  # the first bytes (under 4) of such a message's length, passed on already
        self._held = bytearray()  # the start of a message the read cut, kept until it is whole
        self._pending: dict[tuple[int, bool], tuple[int, bytes, int, int, int]] = {}  # a body a chunk's end cut
        self.saved = 0  # bytes the references took out of the backlog

    def squeeze(self, data: bytes | bytearray, end: int) -> list[bytes | memoryview] | None:
        """`data[:end]`, just read, as it goes into the backlog: None when it goes as it is."""
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
        held, view = self._held, memoryview(data)
        used = 0
        if len(held) < 5:
            used = min(5 - len(held), end)
            held += view[:used]
            if len(held) < 5:
                return -1
        total = 4 + _length(held, 0)[0]
        take = min(total - len(held), end - used)
        if held[4] != CHUNK or total - _HEAD < MIN_CHUNK or not self.known.current:
            out.append(bytes(held))  # not one to squeeze after all: as it came
            out.append(view[used:used + take])
            self._due = total - len(held) - take
            self._held = bytearray()
            return used + take
        held += view[used:used + take]
        if len(held) < total:
            return -1
        whole = bytes(held)
        self._held = bytearray()
        if not self._chunk(whole, 0, total, out):
            out.append(whole)
        return used + take

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
            self._held = bytearray(memoryview(data)[pos:end])

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
