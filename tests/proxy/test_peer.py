"""cri_proxy/proxy/peer.py: who is on the other end of a real unix connection, read from the
kernel and /proc, from processes of known names; what cannot be read is None."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import pytest

from cri_proxy.proxy.peer import PeerCred, bridge_address, bridged_connection, credentials, peer_of

pytestmark = pytest.mark.timeout(30)

# A child that names itself, connects, and waits until told to go (a line on stdin).
CHILD = """
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, sys.argv[2].encode(), 0, 0, 0)
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
print("connected", flush=True)
sys.stdin.readline()
"""


def accept_from_child(sock_dir: pathlib.Path, name: str) -> tuple[socket.socket, subprocess.Popen[str]]:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_dir / "s.sock"))
    server.listen(1)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(sock_dir / "s.sock"), name], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "connected\n"
    conn, _ = server.accept()
    server.close()
    return conn, child


def test_a_live_client_is_known_by_name_and_executable(sock_dir: pathlib.Path) -> None:
    conn, child = accept_from_child(sock_dir, "fake-kubelet")
    try:
        peer = peer_of(conn)
    finally:
        child.communicate("go\n", timeout=10)
        conn.close()
    assert peer == PeerCred(child.pid, os.getuid(), os.getgid(), "fake-kubelet", os.path.realpath(sys.executable))
    assert peer_of(None) == PeerCred()


def test_a_client_gone_before_it_is_looked_at_keeps_its_credentials(sock_dir: pathlib.Path) -> None:
    conn, child = accept_from_child(sock_dir, "short-lived")
    child.communicate("go\n", timeout=10)  # exited and reaped: no /proc entry any more
    try:
        assert peer_of(conn) == PeerCred(child.pid, os.getuid(), os.getgid(), None, None)
        assert peer_of(conn, with_process=False) == credentials(conn)
    finally:
        conn.close()


def test_a_socket_without_credentials_is_all_unknown() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        assert peer_of(tcp) == PeerCred()


def test_the_bridge_reads_the_connection_back_from_its_peer(sock_dir: pathlib.Path) -> None:
    """The relay's socket to the bridge binds to bridge_address; the bridge sees it as its peer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        server.bind(str(sock_dir / "bridge.sock"))
        server.listen()
        client.bind(bridge_address(42))
        client.connect(str(sock_dir / "bridge.sock"))
        accepted, address = server.accept()
        accepted.close()
    assert address == bridge_address(42).encode()  # an abstract name comes back as bytes
    assert bridged_connection("unix-abstract:" + address[1:].decode()) == 42
    assert bridged_connection("unix-abstract:" + bridge_address(42).replace(str(os.getpid()), "1", 1)[1:]) is None
    for other in ("unix:", "unix:/run/x.sock", "ipv4:127.0.0.1:5000", "unix-abstract:cri-proxy-bridge.x", ""):
        assert bridged_connection(other) is None
