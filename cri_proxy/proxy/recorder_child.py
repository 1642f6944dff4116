"""The recorder process as the relay process starts and stops it (see recorder_link).

`spawn` starts `python -m cri_proxy.recorder.worker FD` on one end of a new socketpair and
sends it INIT; `wait_ready` is the blocking start-up wait, used once before the proxy
listens (a restarted recorder is waited for on the event loop instead); `stop` says STOP
and waits while the recorder writes what it holds.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import Callable

from cri_proxy.model import link
from cri_proxy.model.errors import StorageError

log = logging.getLogger(__name__)

# Opening a large database runs its integrity check and its migrations: seconds a GB, and
# minutes for schema 12's copy of a few million calls on a slow disk. With --require-recording
# the proxy waits that long before it listens; otherwise only `RecordConfig.start_wait_s` (a
# recorder still opening then is read on the event loop like a restarted one), so an upgrade
# never keeps the kubelet from its runtime, nor kills a migration half done, over and over.
START_TIMEOUT_S = 600.0
Handler = Callable[[int, memoryview, int, int], None]


SOCKET_BUFFER_BYTES = 4 << 20  # the kernel caps it at net.core.wmem_max


class Child:
    """One recorder process and the proxy's end of its socket."""

    def __init__(self, init: link.Init) -> None:
        parent, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # The default (about 200 KiB) holds a few 26 KB replies: the relay's loop would wake
        # for the socket hundreds of times a second in a flood, the recorder wait between.
        parent.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
        try:
            argv = [sys.executable, "-m", "cri_proxy.recorder.worker", str(theirs.fileno())]
            self.proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        except OSError:
            parent.close()
            raise
        finally:
            theirs.close()
        self.sock = parent
        parent.sendall(link.pickled(link.INIT, init))

    def wait_ready(self, path: str, reader: link.Reader, wait_s: float = START_TIMEOUT_S,
                   give_up: bool = True) -> link.Ready | None:
        """Until the recorder has tried the database. StorageError when it gave up (ERROR:
        --require-recording), exited, or took longer than `wait_s` with `give_up`; None when it
        took longer without (it goes on opening; its READY comes later, on the event loop)."""
        if wait_s <= 0 and not give_up:
            self.sock.setblocking(False)
            return None
        self.sock.settimeout(wait_s)
        answer: list[link.Ready | str] = []

        def take(kind: int, view: memoryview, start: int, stop: int) -> None:
            if kind == link.READY:
                answer.append(link.read_ready(view, start, stop))
            elif kind == link.ERROR:
                answer.append(link.read_error(view, start, stop))

        try:
            while not answer:
                data = self.sock.recv(1 << 16)
                if not data:
                    code = self.proc.wait(5)
                    raise StorageError(f"the recorder process exited (status {code}) before opening {path}; "
                                       "see the lines above")
                reader.feed(data, take)
        except TimeoutError:
            if not give_up:
                self.sock.setblocking(False)
                return None
            self.kill()
            raise StorageError(f"the recorder process did not open {path} within {wait_s:.0f} s") from None
        except BaseException:
            self.kill()
            raise
        if isinstance(answer[0], str):
            self.proc.wait(5)
            raise StorageError(answer[0])
        self.sock.setblocking(False)
        return answer[0]

    def kill(self) -> None:
        """End it (if it still runs) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.sock.close()

    def stop(self, timeout: float, reader: link.Reader, handle: Handler) -> None:
        """STOP, then read its last reports until it closes the socket, and reap it."""
        try:
            self.sock.setblocking(True)
            self.sock.settimeout(timeout)
            self.sock.sendall(link.message(link.STOP))
            while data := self.sock.recv(1 << 16):
                reader.feed(data, handle)
        except OSError as exc:
            log.debug("recorder process socket: %s", exc)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the recorder process did not stop within %.1f s: killing it", timeout)
            self.proc.kill()
            self.proc.wait()
        self.sock.close()
