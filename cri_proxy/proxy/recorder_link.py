"""The proxy's side of the recorder process (see recorder.worker): a Tap, a CallSink and the
recorder's controls, all speaking to the child over one socketpair.

On the relay's path this costs one header and one list append per chunk; the bytes go out
in one `sendmsg` per event-loop turn. The socket never blocks the loop: what the child has
not taken yet waits here, up to `--queue-mb`. Beyond that (the child stalled, or fell far
behind a flood) chunks are dropped rather than waited for. The child is told where bytes
are missing (GAP), resuming at a frame boundary, and records the affected connection's
calls as unparsed, since the lost bytes may have carried HPACK state; the episode is
counted and logged. If the child dies, recording stops with an error in the log and
forwarding goes on (with --require-recording, connections are refused from then on).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import time
from dataclasses import fields
from typing import Any

from cri_proxy.model.errors import StorageError
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.model import link as channel
from cri_proxy.model.call import RecordedCall
from cri_proxy.model.options import RecorderOptions
from cri_proxy.model.session import RecorderStats
from cri_proxy.model.options import RecordConfig
from cri_proxy.model.session import SessionInfo

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # opening a large database runs its integrity check and migrations
_IOV_MAX = 512
_chunk_head = channel.chunk_head


class RecorderProcess:
    """Records through a child process. start() before use, aclose() at the end."""

    def __init__(self, config: RecordConfig, session: SessionInfo) -> None:
        self.options = config.check()  # a wrong flag fails here, before any process starts
        self.config = config
        self.session = session
        self.path = str(config.db)
        self.limit = config.queue_mb << 20
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._out: list[bytes] = []
        self._pending = 0  # bytes in _out
        self._scheduled = False
        self._writing = False  # waiting for the socket to take more
        self._dead = False
        self._gapped: set[tuple[int, bool]] = set()  # (conn, from_client) missing bytes since
        self._gap_since: float | None = None
        self._dropped = 0  # bytes dropped in the current episode
        self._gap_episodes = 0
        self._stats: dict[str, Any] = {f.name: 0 for f in fields(RecorderStats)}
        self._stats["healthy"] = True
        self._reader = channel.Reader()
        self.session_id: int | None = None

    # -- control --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the child and wait until its database is open. StorageError if it cannot be."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            argv = [sys.executable, "-m", "cri_proxy.recorder.worker", str(child.fileno())]
            self._proc = subprocess.Popen(argv, pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL)
        finally:
            child.close()
        self._sock = parent
        level = logging.getLevelName(logging.getLogger("cri_proxy").getEffectiveLevel())
        parent.sendall(channel.message(channel.INIT, (self.config, self.session, level)))
        parent.settimeout(START_TIMEOUT_S)
        answer: list[tuple[int, Any]] = []

        def take(kind: int, view: memoryview, start: int, stop: int) -> None:
            answer.append((kind, channel.value(view, start, stop)))

        try:
            while not answer:
                data = parent.recv(1 << 16)
                if not data:
                    code = self._proc.wait(5)
                    raise StorageError(f"the recorder process exited (status {code}) before opening {self.path}; "
                                       "see the lines above")
                self._reader.feed(data, take)
        except TimeoutError:
            self._kill()
            raise StorageError(f"the recorder process did not open {self.path} within {START_TIMEOUT_S:.0f} s") \
                from None
        except BaseException:
            self._kill()
            raise
        kind, value = answer[0]
        if kind == channel.ERROR:
            self._proc.wait(5)
            raise StorageError(value)
        self.session_id = value
        parent.setblocking(False)

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._sock is not None:
            self._sock.close()

    def _attach(self) -> asyncio.AbstractEventLoop:
        loop = self._loop = asyncio.get_running_loop()
        assert self._sock is not None
        loop.add_reader(self._sock.fileno(), self._on_readable)
        return loop

    async def aclose(self, timeout_s: float | None = None) -> None:
        """Hand over what is waiting, tell the child to stop, and wait while it records the rest."""
        timeout = self.options.close_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        while self._out and not self._dead and time.monotonic() < deadline:
            self._flush()
            await asyncio.sleep(0.01)
        if self._out and not self._dead:
            log.warning("the recorder process did not take %d bytes within %.1f s: they are lost",
                        self._pending, timeout)
        if not self._dead:
            self._detach()
        await asyncio.to_thread(self._stop_child, max(0.5, deadline - time.monotonic()) + 2.0)

    def _stop_child(self, timeout: float) -> None:
        sock, proc = self._sock, self._proc
        if sock is None or proc is None:
            return
        try:
            sock.setblocking(True)
            sock.settimeout(timeout)
            if not self._dead:
                sock.sendall(channel.message(channel.STOP))
            while data := sock.recv(1 << 16):
                self._reader.feed(data, self._take)
        except OSError as exc:
            log.debug("recorder process socket: %s", exc)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the recorder process did not stop within %.1f s: killing it", timeout)
            proc.kill()
            proc.wait()
        sock.close()
        self._dead = True

    @property
    def stats(self) -> RecorderStats:
        s = dict(self._stats)
        s["healthy"] = bool(s["healthy"]) and not self._dead and self._gap_since is None
        s["loss_episodes"] += self._gap_episodes
        s["queued_bytes"] += self._pending
        return RecorderStats(**s)

    # -- CallSink and recorder controls ------------------------------------------------------
    def submit(self, call: RecordedCall) -> None:
        """A call the bridge served; like every sink, never blocks and never raises."""
        try:
            self._send(channel.message(channel.CALL, call))
        except Exception:
            log.exception("could not hand a call to the recorder process")

    def update_session(self, **changes: Any) -> None:
        self._send(channel.message(channel.SESSION, changes))

    # -- Tap --------------------------------------------------------------------------------
    def open(self, info: ConnectionInfo) -> _Shipped:
        self._send(channel.message(channel.OPEN, (info.conn_id, info)))
        return _Shipped(self, info.conn_id)

    # -- the way out ------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        if self._dead:
            return
        self._out.append(data)
        self._pending += len(data)
        self._wake()

    def chunk(self, conn_id: int, from_client: bool, data: bytes, boundary: bool) -> None:
        if self._dead:
            return
        key = (conn_id, from_client)
        if self._pending > self.limit or (self._gapped and key in self._gapped):
            if not self._resume(key, boundary):
                self._dropped += len(data)
                return
        self._out.append(_chunk_head(conn_id, from_client, time.time(), time.monotonic(), len(data)))
        self._out.append(data)
        self._pending += len(data) + channel.CHUNK_HEAD.size
        if not self._scheduled:
            self._wake()

    def _resume(self, key: tuple[int, bool], boundary: bool) -> bool:
        """Over the limit, or resuming after it: whether this chunk may go (after a GAP)."""
        if self._pending > self.limit or (self._gap_since is not None and self._pending > self.limit // 2):
            if self._gap_since is None:
                self._gap_since = time.time()
                self._gap_episodes += 1
                log.warning("the recorder process is %d MiB behind: relayed bytes are dropped until it catches up "
                            "(the affected connections' calls are recorded as unparsed)", self._pending >> 20)
            self._gapped.add(key)
            return False
        if not boundary:
            return False  # the child can only pick up again where a frame begins
        self._gapped.discard(key)
        self._out.append(channel.message(channel.GAP, (key[0], key[1], time.monotonic())))
        self._episode_over()
        return True

    def _episode_over(self) -> None:
        if not self._gapped and self._gap_since is not None:
            log.warning("the recorder process caught up after %.1f s; %d MiB of relayed bytes were not recorded",
                        time.time() - self._gap_since, self._dropped >> 20)
            self._gap_since = None
            self._dropped = 0

    def forget(self, conn_id: int) -> None:
        if self._gapped:
            self._gapped.discard((conn_id, True))
            self._gapped.discard((conn_id, False))
            self._episode_over()

    def _wake(self) -> None:
        if self._scheduled or self._writing:
            return
        loop = self._loop or self._attach()
        self._scheduled = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        sock = self._sock
        if sock is None or self._dead:
            return
        out = self._out
        while out:
            batch = out[:_IOV_MAX]
            try:
                sent = sock.sendmsg(batch)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._died(f"sending to it failed: {exc}")
                return
            size = sum(map(len, batch))
            if sent < size:
                self._consume(sent)
                if not self._writing and self._loop is not None:
                    self._writing = True
                    self._loop.add_writer(sock.fileno(), self._flush)
                return
            del out[:len(batch)]
            self._pending -= size
        if self._writing and self._loop is not None:
            self._writing = False
            self._loop.remove_writer(sock.fileno())

    def _consume(self, sent: int) -> None:
        out = self._out
        self._pending -= sent
        i = 0
        while sent and sent >= len(out[i]):
            sent -= len(out[i])
            i += 1
        del out[:i]
        if sent:
            out[0] = out[0][sent:]

    def _on_readable(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            self._died(str(exc))
            return
        if not data:
            self._died("it closed its socket")
            return
        self._reader.feed(data, self._take)

    def _take(self, kind: int, view: memoryview, start: int, stop: int) -> None:
        if kind == channel.STATS:
            self._stats = channel.value(view, start, stop)

    def _died(self, why: str) -> None:
        if self._dead:
            return
        self._dead = True
        code = self._proc.poll() if self._proc is not None else None
        log.error("the recorder process stopped (%s%s): calls are no longer recorded; forwarding goes on",
                  why, "" if code is None else f", exit status {code}")
        self._detach()

    def _detach(self) -> None:
        """Off the event loop, and nothing more to send."""
        if self._loop is not None and self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            if self._writing:
                self._loop.remove_writer(self._sock.fileno())
        self._writing = False
        self._out.clear()
        self._pending = 0


class _Shipped:
    """One connection's tap: its bytes go to the recorder process as they are."""

    __slots__ = ("proc", "conn_id")

    def __init__(self, proc: RecorderProcess, conn_id: int) -> None:
        self.proc = proc
        self.conn_id = conn_id

    def client_bytes(self, data: bytes, boundary: bool) -> None:
        self.proc.chunk(self.conn_id, True, data, boundary)

    def server_bytes(self, data: bytes, boundary: bool) -> None:
        self.proc.chunk(self.conn_id, False, data, boundary)

    def upstream_changed(self, upstream: str) -> None:
        self.proc._send(channel.message(channel.UPSTREAM, (self.conn_id, upstream)))

    def closed(self, reason: str | None) -> None:
        self.proc.forget(self.conn_id)
        self.proc._send(channel.message(channel.CLOSED, (self.conn_id, time.monotonic(), reason)))

