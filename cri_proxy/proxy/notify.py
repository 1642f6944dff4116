"""Telling the service manager how the proxy is doing: systemd's sd_notify protocol.

A datagram of `KEY=value` lines on the unix socket named by $NOTIFY_SOCKET (a path, or an
abstract-namespace name when it starts with '@'): `READY=1` once the listen socket accepts
connections, `STATUS=` what it forwards, `WATCHDOG=1` while the event loop runs, and
`STOPPING=1` at shutdown. Without $NOTIFY_SOCKET (not started by systemd, or Type=simple)
every call does nothing. Written here rather than taken from a library: it is one sendto().
A failed send is logged once and never stops the proxy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def socket_address(value: str) -> str:
    """The address to send to: '@name' is the abstract-namespace name "\\0name"."""
    return "\0" + value[1:] if value.startswith("@") else value


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec=), or None when none is asked for.

    $WATCHDOG_PID, when set, names the process the watchdog is meant for: another process
    (a child that inherited the environment) must not ping for it.
    """
    usec = env.get("WATCHDOG_USEC", "")
    target = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (target and target != str(pid)):
        return None
    return int(usec) / 1e6 / 2


class Notifier:
    """The proxy's side of sd_notify; inert when $NOTIFY_SOCKET is not set."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        self.address = socket_address(raw) if raw else None
        self.interval = watchdog_interval(env, os.getpid()) if self.address else None
        self._failed = False
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one datagram of `lines`; False when not enabled or the send failed."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify the service manager on %r: %s", self.address, exc)
                self._failed = True
            return False
        return True

    def ready(self, status: str) -> None:
        """The listen socket accepts connections: say so, once."""
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def start_watchdog(self) -> None:
        """Ping every WatchdogSec/2 from the event loop: a loop that hangs stops the pings."""
        if self.interval is not None and self._watchdog is None:
            log.info("service manager watchdog: pinging every %.3gs", self.interval)
            self._watchdog = asyncio.get_running_loop().create_task(self._ping(self.interval), name="watchdog")

    async def stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            try:
                await self._watchdog
            except asyncio.CancelledError:
                pass
            self._watchdog = None

    async def _ping(self, interval: float) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)
