"""The byte format between the proxy and its recorder process, over one unix socketpair.

Every message is `<I length><B kind>` followed by `length - 1` bytes of body (the framing,
the kinds and the Reader are model.link_format's, re-exported here). The proxy's hot
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
import struct
from dataclasses import dataclass
from typing import Any, Final

from cri_proxy.model.link_format import (  # the framing, re-exported: callers read link.CHUNK, link.Reader...
    CALL, CHUNK, CHUNK_FIXED, CHUNK_HEAD, CLOSED, ERROR, GAP, GAP_BEHIND, GAP_RESTARTED, GAP_THIN_END,
    GAP_THIN_START, HEAD, INIT, LEAN_DATA_FRAME, LEAN_SUMMARY, LENGTH, NOTE, OPEN, READY, RELAY, SESSION, STATS,
    STOP, UPSTREAM, Reader, chunk_head, lean_data, message, messages, pickled, read_lean_data, unpickled,
)
from cri_proxy.model.options import RecordConfig
from cri_proxy.model.session import LossEpisode, RecorderStats, SessionInfo

__all__ = [
    "CALL", "CHUNK", "CHUNK_FIXED", "CHUNK_HEAD", "CLOSED", "ERROR", "GAP", "GAP_BEHIND", "GAP_RESTARTED",
    "GAP_THIN_END", "GAP_THIN_START", "HEAD", "INIT", "Init", "LEAN_DATA_FRAME", "LEAN_SUMMARY", "LENGTH",
    "NOTE", "OPEN", "Opened", "READY", "RELAY", "Reader", "Ready", "RelayState", "Resume", "SESSION", "STATS",
    "STOP", "Stats", "UPSTREAM", "chunk_head", "closed_message", "error_message", "gap_message", "lean_data",
    "message", "messages", "note_message", "open_message", "pickled", "read_closed", "read_error", "read_gap",
    "read_lean_data", "read_note", "read_open", "read_opened", "read_ready", "read_relay", "read_session",
    "read_stats", "read_upstream", "ready_message", "relay_message", "session_message", "stats_message",
    "unpickled", "upstream_message",
]

_CONN: Final = struct.Struct("<I")
_OPEN: Final = struct.Struct("<Iqq")  # conn_id, peer_pid, peer_uid (-1: unknown)
# The rest of who the peer is, after the upstream and a NUL (a unix socket path cannot hold
# one): an OPEN without it, as before, reads with those facts unknown.
_PEER: Final = struct.Struct("<qH")  # peer_gid (-1: unknown), length of the process name (0: unknown)
_CLOSED: Final = struct.Struct("<IdB")  # conn_id, monotonic, has a reason
# conn_id, from_client, monotonic, why (GAP_BEHIND, GAP_RESTARTED, GAP_THIN_*), calls begun in the dropped bytes
_GAP: Final = struct.Struct("<IBdBI")
_RELAY: Final = struct.Struct("<B")  # the listen socket accepts
_NOTE: Final = struct.Struct("<II")  # conn_id, stream_id (0: every later call of the connection)
_READY: Final = struct.Struct("<q")  # session id (-1: no session row yet)
_STATS: Final = struct.Struct("<6QBQQq")  # RecorderStats, received, pending, session id (-1: none)
_NONE: Final = -1


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


