"""The bridge's channels to its upstreams, and what tells the prober they may have changed.

One `Upstream` per socket the bridge forwards to ("runtime", and "image" when the image
service has its own endpoint). Its channel reconnects like the kubelet's (100 ms to 3 s, not
wait-for-ready). The bridge does not probe versions itself: it is given the proxy's prober
(an `ApiSource`) and reads its answers. What the channel sees is the cheapest sign that the
runtime changed, so the channel tells the prober: when it leaves READY (the runtime went
away) and when it is READY again (maybe upgraded or downgraded), and when a forwarded call
failed UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib

import grpc

from cri_proxy.bridge.options import BridgeOptions
from cri_proxy.model.upstream import ApiSource

log = logging.getLogger(__name__)


def channel_options(options: BridgeOptions) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", options.max_message_bytes),
        ("grpc.max_send_message_length", options.max_message_bytes),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 3000),
        ("grpc.use_local_subchannel_pool", 1),
    ]


class Upstream:
    """One upstream socket: its channel, and the prober to tell when it may have changed."""

    def __init__(self, name: str, path: pathlib.Path, options: BridgeOptions, source: ApiSource) -> None:
        self.name = name
        self.path = path
        self.target = f"unix://{path}"
        self.source = source
        self.channel = grpc.aio.insecure_channel(self.target, options=channel_options(options))
        self._watcher: asyncio.Task[None] | None = None
        self._unary: dict[str, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = {}

    def unary(self, path: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        """The raw-bytes callable for `path` on this channel (made once per path)."""
        found = self._unary.get(path)
        if found is None:
            found = self._unary[path] = self.channel.unary_unary(path, None, None)
        return found

    def start(self) -> None:
        self._watcher = asyncio.create_task(self._watch(), name=f"bridge-watch-{self.name}")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.channel.close(None)

    def mark_unavailable(self) -> None:
        """A forwarded call failed UNAVAILABLE: the runtime may come back as another one."""
        self.source.probe_soon()

    async def _watch(self) -> None:
        """Ask the prober again whenever the channel leaves READY and when it is READY again."""
        ready = grpc.ChannelConnectivity.READY
        state = self.channel.get_state(try_to_connect=True)
        lost = False
        while True:
            await self.channel.wait_for_state_change(state)
            new = self.channel.get_state(try_to_connect=True)
            if state == ready and new != ready:
                log.info("upstream %s (%s) connection lost (%s)", self.name, self.target, new.name)
                lost = True
                self.source.probe_soon()
            if new == ready and lost:
                lost = False
                self.source.probe_soon()
            state = new


class Upstreams:
    """The upstreams of one bridge: the runtime's, and the image endpoint's when separate."""

    def __init__(self, runtime: pathlib.Path, image: pathlib.Path | None, options: BridgeOptions,
                 source: ApiSource) -> None:
        self.runtime = Upstream("runtime", runtime, options, source)
        self.image = (Upstream("image", image, options, source)
                      if image is not None and image != runtime else None)

    def upstream(self, key: str) -> Upstream:
        return self.image if key == "image" and self.image is not None else self.runtime

    def all(self) -> list[Upstream]:
        return [self.runtime] + ([self.image] if self.image is not None else [])

    def start(self) -> None:
        for up in self.all():
            up.start()

    async def close(self) -> None:
        for up in self.all():
            await up.close()
