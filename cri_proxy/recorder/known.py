"""The bodies a squeezed backlog references (recorder.squeeze), and the SQUEEZED message's form.

The recorder's thread publishes the tap's last bodies (`Known.publish`, from wire.LastBodies);
the intake thread's squeezer looks for them in what it reads and counts each reference it
makes (`take`); the recorder's thread reads a SQUEEZED message back as the CHUNK's bytes
(`pieces`) and lets the references go (`release`). A body no longer published is held while
the backlog references it; once those held pass `HELD_MAX`, no new reference is made, so the
memory stays bounded in bytes. SQUEEZED is this process's own: it never crosses the link,
only the spool.
"""

from __future__ import annotations

import struct
import threading
from typing import Final, Protocol

__all__ = ["FIXED", "HELD_MAX", "NEEDLE", "SEGMENT", "SQUEEZED", "Bodies", "Known", "pieces"]

SQUEEZED: Final = 40  # a CHUNK with references (never on the link: the link's kinds are below 32)
FIXED: Final = struct.Struct("<IBIBddI")  # length, kind, conn_id, from_client, wall, mono, the CHUNK's size
SEGMENT: Final = struct.Struct("<III")  # body id (0: literal, its bytes follow), offset in the body, size
NEEDLE: Final = 32  # a body is looked for by its first bytes, then compared in full
HELD_MAX: Final = 8 << 20  # bodies no longer published, held for the backlog's references
_segment = SEGMENT.unpack_from


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
