"""The byte format between the proxy and its recorder process, over one unix socketpair.

Every message is `<I length><B kind>` followed by `length - 1` bytes of body. The proxy's hot
path writes CHUNK messages: a fixed header (connection, direction, wall and monotonic time)
and the bytes the relay forwarded, untouched. The other frequent kinds have fixed struct
layouts, built and read by the typed functions below (`open_message`/`read_open`, ...), so
a malformed body is a ValueError naming the kind, not an arbitrary object. When the recorder
needs no message bodies (metrics only), the CHUNK bytes are in the lean form (`lean_data`):
frames as relayed, but each DATA frame's payload replaced by a summary of its messages (a small
frame of one whole message goes as it is: proxy/lean.py). Only two kinds
are pickled, both internal and both ends this package: INIT (once per recorder process:
the options, the session, what a restarted recorder carries on from) and CALL (a bridged
call, a whole RecordedCall, on the bridge's own slow path).

STATS doubles as the acknowledgement: the recorder sends it every STATS_INTERVAL_S and at
once after each batch it commits, with how many link bytes it has handled (`received`) and
how many calls it has taken in and not settled yet (`pending`: open, or queued). If it
dies, that is what the proxy counts lost, plus the calls in what it shipped since.
"""

from __future__ import annotations

import json
import pickle
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from cri_proxy.model.options import RecordConfig
from cri_proxy.model.session import LossEpisode, RecorderStats, SessionInfo

LENGTH: Final = struct.Struct("<I")
CHUNK_HEAD: Final = struct.Struct("<IBIBdd")  # length, kind, conn_id, from_client, wall, monotonic
CHUNK_FIXED: Final = CHUNK_HEAD.size - LENGTH.size  # body bytes before the data, kind included
HEAD: Final = LENGTH.size + 1  # a message's body starts this far from its first byte

# proxy -> recorder
INIT: Final = 0  # pickled Init
CHUNK: Final = 1
OPEN: Final = 2  # _OPEN + upstream (utf-8) [+ NUL + _PEER + process name + executable (utf-8)]
CLOSED: Final = 3  # _CLOSED + reason (utf-8; absent when None)
UPSTREAM: Final = 4  # _CONN + upstream (utf-8)
GAP: Final = 5  # _GAP
CALL: Final = 6  # pickled RecordedCall (the bridge's calls)
SESSION: Final = 7  # JSON object of SessionInfo changes
STOP: Final = 8  # empty: record what is queued, then exit
RELAY: Final = 9  # _RELAY + why the runtime does not answer (utf-8; empty when it does): for /readyz
NOTE: Final = 10  # _NOTE + JSON [upstream_api, [notes]]: what the relay's translation did to a call
# recorder -> proxy
READY: Final = 20  # _READY + why recording does not work yet (utf-8; empty when it does)
ERROR: Final = 21  # utf-8 message: the recorder could not start (--require-recording)
STATS: Final = 22  # _STATS

_CONN: Final = struct.Struct("<I")
_OPEN: Final = struct.Struct("<Iqq")  # conn_id, peer_pid, peer_uid (-1: unknown)
# The rest of who the peer is, after the upstream and a NUL (a unix socket path cannot hold
# one): an OPEN without it, as before, reads with those facts unknown.
_PEER: Final = struct.Struct("<qH")  # peer_gid (-1: unknown), length of the process name (0: unknown)
_CLOSED: Final = struct.Struct("<IdB")  # conn_id, monotonic, has a reason
# conn_id, from_client, monotonic, why (GAP_BEHIND, GAP_RESTARTED, GAP_THIN_*), calls begun in the dropped bytes
_GAP: Final = struct.Struct("<IBdBI")
GAP_BEHIND: Final = 0  # the recorder fell behind: the proxy dropped bytes
GAP_RESTARTED: Final = 1  # a new recorder joins a connection already under way
GAP_THIN_START: Final = 2  # from here the direction's frames come without DATA (proxy.recorder_out)
GAP_THIN_END: Final = 3  # and from here whole again
_RELAY: Final = struct.Struct("<B")  # the listen socket accepts
_NOTE: Final = struct.Struct("<II")  # conn_id, stream_id (0: every later call of the connection)
_READY: Final = struct.Struct("<q")  # session id (-1: no session row yet)
_STATS: Final = struct.Struct("<6QBQQq")  # RecorderStats, received, pending, session id (-1: none)
_NONE: Final = -1

# The lean form of CHUNK bytes (proxy/lean.py), used on a link whose recorder needs no message
# bodies (RecordConfig.needs_bodies false): every DATA frame's payload is replaced by this
# summary, in a frame of its own (header: length, type DATA, END_STREAM kept, stream), but
# for a small unpadded frame of one whole message, which goes as it is (lean.PASS_WHOLE) and
# is never of the summary's length.
LEAN_SUMMARY: Final = struct.Struct(">BIQ")  # malformed padding, gRPC messages completed, their bytes
LEAN_DATA_FRAME: Final = struct.Struct(">BHBBIBIQ")


@dataclass(frozen=True, slots=True)
class Opened:
    """An OPEN message: a relayed connection and who is on its client end."""

    conn_id: int
    peer_pid: int | None
    peer_uid: int | None
    upstream: str
    peer_gid: int | None = None
    peer_name: str | None = None
    peer_exe: str | None = None


@dataclass(frozen=True, slots=True)
class Resume:
    """What a recorder started after another one died carries on from."""

    session_id: int | None  # the run's sessions row (None: the dead one never opened one)
    stats: RecorderStats  # the run's counters as the dead recorder last reported them
    loss: LossEpisode  # what went unrecorded between its last report and this start


@dataclass(frozen=True, slots=True)
class Init:
    config: RecordConfig
    session: SessionInfo
    log_level: str
    resume: Resume | None = None


@dataclass(frozen=True, slots=True)
class Stats:
    """What the recorder reports: its counters, and how far it has acknowledged the link."""

    stats: RecorderStats
    received: int  # link bytes it has handled (whole messages)
    pending: int  # calls it has taken in and not yet settled (open on a connection, or queued)
    session_id: int | None  # the run's sessions row, once the database has been opened


@dataclass(frozen=True, slots=True)
class RelayState:
    """The relay's readiness, as /readyz reports it: listening, and the runtime answering."""

    listening: bool = False
    trouble: str | None = None  # why the runtime's last probe got no answer; None when it answered

    def reason(self) -> str | None:
        """None when ready, else why not."""
        if not self.listening:
            return "the proxy is not accepting connections yet"
        if self.trouble is not None:
            return f"the runtime does not answer: {self.trouble}"
        return None


@dataclass(frozen=True, slots=True)
class Ready:
    session_id: int | None  # None: the database could not be opened (yet)
    fault: str  # why recording does not work yet; "" when it does


def chunk_head(conn_id: int, from_client: bool, wall: float, mono: float, size: int) -> bytes:
    return CHUNK_HEAD.pack(CHUNK_FIXED + size, CHUNK, conn_id, from_client, wall, mono)


def lean_data(flags: int, stream_id: int, bad: bool, messages: int, size: int) -> bytes:
    """A DATA frame in the lean form: `messages` gRPC messages of `size` bytes (prefixes
    excluded) completed in it, or `bad`: its padding is malformed."""
    return LEAN_DATA_FRAME.pack(0, LEAN_SUMMARY.size, 0, flags, stream_id, bad, messages, size)


def read_lean_data(payload: bytes) -> tuple[bool, int, int]:
    """(malformed padding, messages, bytes) of a lean DATA frame's payload."""
    if len(payload) != LEAN_SUMMARY.size:
        raise ValueError(f"lean DATA frame of {len(payload)} bytes, expected {LEAN_SUMMARY.size}")
    bad, messages, size = LEAN_SUMMARY.unpack(payload)
    return bool(bad), messages, size


def message(kind: int, body: bytes = b"") -> bytes:
    return LENGTH.pack(1 + len(body)) + bytes((kind,)) + body


def pickled(kind: int, value: Any) -> bytes:
    """INIT and CALL only (see the module docstring)."""
    return message(kind, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def unpickled(view: memoryview, start: int, stop: int) -> Any:
    return pickle.loads(view[start:stop])


def _text(view: memoryview, start: int, stop: int) -> str:
    return bytes(view[start:stop]).decode("utf-8", "replace")


def _fixed(layout: struct.Struct, kind: int, view: memoryview, start: int, stop: int) -> tuple[Any, ...]:
    if stop - start < layout.size:
        raise ValueError(f"link message of kind {kind}: {stop - start} bytes, expected at least {layout.size}")
    return layout.unpack_from(view, start)


def _opt(value: int | None) -> int:
    return _NONE if value is None else value


def _unopt(value: int) -> int | None:
    return None if value == _NONE else value


# -- proxy -> recorder --------------------------------------------------------------------
def open_message(conn_id: int, peer_pid: int | None, peer_uid: int | None, upstream: str,
                 peer_gid: int | None = None, peer_name: str | None = None, peer_exe: str | None = None) -> bytes:
    body = _OPEN.pack(conn_id, _opt(peer_pid), _opt(peer_uid)) + upstream.encode()
    if peer_gid is not None or peer_name or peer_exe:
        name = (peer_name or "").encode()[:0xFFFF]
        body += b"\0" + _PEER.pack(_opt(peer_gid), len(name)) + name + (peer_exe or "").encode()
    return message(OPEN, body)


def read_opened(view: memoryview, start: int, stop: int) -> Opened:
    conn_id, pid, uid = _fixed(_OPEN, OPEN, view, start, stop)
    rest = bytes(view[start + _OPEN.size:stop])
    upstream, nul, peer = rest.partition(b"\0")
    if not nul:
        return Opened(conn_id, _unopt(pid), _unopt(uid), upstream.decode("utf-8", "replace"))
    if len(peer) < _PEER.size:
        raise ValueError(f"link message of kind {OPEN}: {len(peer)} bytes of peer, expected at least {_PEER.size}")
    gid, name_size = _PEER.unpack_from(peer)
    name = peer[_PEER.size:_PEER.size + name_size].decode("utf-8", "replace")
    exe = peer[_PEER.size + name_size:].decode("utf-8", "replace")
    return Opened(conn_id, _unopt(pid), _unopt(uid), upstream.decode("utf-8", "replace"), _unopt(gid),
                  name or None, exe or None)


def read_open(view: memoryview, start: int, stop: int) -> tuple[int, int | None, int | None, str]:
    """The connection, its peer's pid and uid, and its upstream (read_opened: everything)."""
    opened = read_opened(view, start, stop)
    return opened.conn_id, opened.peer_pid, opened.peer_uid, opened.upstream


def closed_message(conn_id: int, mono: float, reason: str | None) -> bytes:
    tail = b"" if reason is None else reason.encode()
    return message(CLOSED, _CLOSED.pack(conn_id, mono, reason is not None) + tail)


def read_closed(view: memoryview, start: int, stop: int) -> tuple[int, float, str | None]:
    conn_id, mono, has_reason = _fixed(_CLOSED, CLOSED, view, start, stop)
    return conn_id, mono, _text(view, start + _CLOSED.size, stop) if has_reason else None


def upstream_message(conn_id: int, upstream: str) -> bytes:
    return message(UPSTREAM, _CONN.pack(conn_id) + upstream.encode())


def read_upstream(view: memoryview, start: int, stop: int) -> tuple[int, str]:
    (conn_id,) = _fixed(_CONN, UPSTREAM, view, start, stop)
    return conn_id, _text(view, start + _CONN.size, stop)


def gap_message(conn_id: int, from_client: bool, mono: float, why: int = GAP_BEHIND, calls: int = 0) -> bytes:
    return message(GAP, _GAP.pack(conn_id, from_client, mono, why, calls))


def read_gap(view: memoryview, start: int, stop: int) -> tuple[int, bool, float, int, int]:
    conn_id, from_client, mono, why, calls = _fixed(_GAP, GAP, view, start, stop)
    return conn_id, bool(from_client), mono, why, calls


def session_message(changes: dict[str, str | None]) -> bytes:
    return message(SESSION, json.dumps(changes).encode())


def read_session(view: memoryview, start: int, stop: int) -> dict[str, str | None]:
    value = json.loads(bytes(view[start:stop]))
    if not isinstance(value, dict):
        raise ValueError(f"link message of kind {SESSION}: expected a JSON object")
    return value


def relay_message(state: RelayState) -> bytes:
    return message(RELAY, _RELAY.pack(state.listening) + (state.trouble or "").encode())


def read_relay(view: memoryview, start: int, stop: int) -> RelayState:
    (listening,) = _fixed(_RELAY, RELAY, view, start, stop)
    return RelayState(bool(listening), _text(view, start + _RELAY.size, stop) or None)


def note_message(conn_id: int, stream_id: int, upstream_api: str | None, notes: list[str]) -> bytes:
    return message(NOTE, _NOTE.pack(conn_id, stream_id) + json.dumps([upstream_api, notes]).encode())


def read_note(view: memoryview, start: int, stop: int) -> tuple[int, int, str | None, list[str]]:
    conn_id, stream_id = _fixed(_NOTE, NOTE, view, start, stop)
    value = json.loads(bytes(view[start + _NOTE.size:stop]))
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], list)):
        raise ValueError(f"link message of kind {NOTE}: expected [upstream_api, notes]")
    return conn_id, stream_id, value[0], [str(note) for note in value[1]]


# -- recorder -> proxy --------------------------------------------------------------------
def ready_message(session_id: int | None, fault: str = "") -> bytes:
    return message(READY, _READY.pack(_opt(session_id)) + fault.encode())


def read_ready(view: memoryview, start: int, stop: int) -> Ready:
    (session_id,) = _fixed(_READY, READY, view, start, stop)
    return Ready(_unopt(session_id), _text(view, start + _READY.size, stop))


def error_message(text: str) -> bytes:
    return message(ERROR, text.encode())


def read_error(view: memoryview, start: int, stop: int) -> str:
    return _text(view, start, stop)


def stats_message(s: RecorderStats, received: int, pending: int, session_id: int | None) -> bytes:
    return message(STATS, _STATS.pack(s.recorded, s.lost, s.skipped, s.loss_episodes, s.queued, s.queued_bytes,
                                      s.healthy, received, pending, _opt(session_id)))


def read_stats(view: memoryview, start: int, stop: int) -> Stats:
    recorded, lost, skipped, episodes, queued, queued_bytes, healthy, received, pending, session_id = \
        _fixed(_STATS, STATS, view, start, stop)
    return Stats(RecorderStats(recorded, lost, skipped, episodes, queued, queued_bytes, bool(healthy)),
                 received, pending, _unopt(session_id))


class Reader:
    """Cuts a byte stream into messages and hands each to `handle(kind, view, start, stop)`,
    where `view[start:stop]` is the body; the view is only valid during the call."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes, handle: Callable[[int, memoryview, int, int], None]) -> None:
        buf = self._buf
        buf += data
        pos = 0
        view = memoryview(buf)
        try:
            for kind, start, stop in messages(buf):
                handle(kind, view, start, stop)
                pos = stop
        finally:
            view.release()
            del buf[:pos]


def messages(buf: bytes | bytearray | memoryview, pos: int = 0) -> Iterator[tuple[int, int, int]]:
    """The whole messages in `buf` from `pos` on, in order: (kind, start, stop) of each body."""
    end = len(buf)
    while pos + 5 <= end:
        (length,) = LENGTH.unpack_from(buf, pos)
        stop = pos + 4 + length
        if stop > end:
            return
        yield buf[pos + 4], pos + 5, stop
        pos = stop
