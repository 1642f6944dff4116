"""Who is on the other end of an accepted unix connection: the kernel's SO_PEERCRED (pid, uid,
gid of the process that connected) and, from /proc, that process's name and executable.

Read once per connection, at accept, by the relay: a short-lived client such as crictl may be
gone by the time the recorder process could look. What cannot be read is None and the rest
is kept: /proc/PID/exe of another user's process needs CAP_SYS_PTRACE (EACCES otherwise), a
process that already exited has no /proc entry, and a socket that is not AF_UNIX has no
credentials. Nothing here raises.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from typing import Final

_UCRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True, slots=True)
class PeerCred:
    pid: int | None = None
    uid: int | None = None
    gid: int | None = None
    name: str | None = None  # /proc/PID/comm ("kubelet", "crictl"; the kernel cuts it at 15 bytes)
    exe: str | None = None  # /proc/PID/exe's target


def credentials(sock: socket.socket | None) -> PeerCred:
    """pid, uid and gid from SO_PEERCRED (all None when the socket has none)."""
    if sock is None:
        return PeerCred()
    try:
        pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except OSError:
        return PeerCred()
    # pid 0: the peer is in a pid namespace this one cannot see; -1: no peer (not connected, not unix)
    return PeerCred(pid or None, uid if uid >= 0 else None, gid if gid >= 0 else None)


def process_name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read(64).decode("utf-8", "replace").strip() or None
    except OSError:
        return None


def executable(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


# The relay's socket to the bridge (same process) binds to an abstract unix address naming the
# client connection it carries; grpc reports it as the bridged call's peer, so the bridge
# records each call with the connection's real client (the kubelet), not the proxy itself.
_BRIDGED: Final = "cri-proxy-bridge."


def bridge_address(conn_id: int) -> str:
    """The abstract address (Linux) the socket carrying connection `conn_id` to the bridge binds to."""
    return f"\0{_BRIDGED}{os.getpid()}.{conn_id}"


def bridged_connection(peer: str) -> int | None:
    """The connection a bridged call came through, from grpc's peer string
    (`unix-abstract:cri-proxy-bridge.PID.CONN`); None for any other peer."""
    kind, _, name = peer.partition(":")
    pid, _, conn = name.removeprefix(_BRIDGED).partition(".")
    if kind != "unix-abstract" or not name.startswith(_BRIDGED) or pid != str(os.getpid()) or not conn.isdigit():
        return None
    return int(conn)


def peer_of(sock: socket.socket | None, with_process: bool = True) -> PeerCred:
    """Everything that can be known of the peer; `with_process` False skips /proc (two
    system calls and a file read less, for a relay that records nothing)."""
    cred = credentials(sock)
    if cred.pid is None or not with_process:
        return cred
    return PeerCred(cred.pid, cred.uid, cred.gid, process_name(cred.pid), executable(cred.pid))
