"""What a recorder link's far end has received, as (kind, body) pairs: for the outbox's tests."""

from __future__ import annotations

import socket

from cri_proxy.model import link


def received(sock: socket.socket) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    reader = link.Reader()
    sock.setblocking(False)
    try:
        while data := sock.recv(1 << 16):
            reader.feed(data, lambda kind, view, start, stop: got.append((kind, bytes(view[start:stop]))))
    except BlockingIOError:
        pass
    return got
