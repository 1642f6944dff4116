"""Which CRI version each upstream speaks, found the way the kubelet finds it, kept current.

One `Upstream` per socket the bridge forwards to ("runtime", and "image" when the image
service has its own endpoint). Its channel reconnects like the kubelet's (100 ms to 3 s, not
wait-for-ready). The version is probed at start, again whenever the channel becomes READY
after having left it (the runtime went away and came back, maybe upgraded), and before the
next call after a forwarded call failed UNAVAILABLE. `Negotiator` owns the upstreams and
reports every result through `on_negotiated(service, version)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
from collections.abc import Callable

import grpc

from cri_proxy.bridge.options import EVENTS_MISSING, EVENTS_NATIVE, BridgeOptions

log = logging.getLogger(__name__)

PROBES = {"runtime": "RuntimeService/Version", "image": "ImageService/ImageFsInfo"}
EVENTS_PROBE_S = 0.3  # a runtime with events keeps the stream open; one without answers at once

OnNegotiated = Callable[[str, "str | None"], None]


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
    """One upstream socket: its channel and what it was last found to speak."""

    def __init__(self, name: str, path: pathlib.Path, options: BridgeOptions,
                 on_negotiated: OnNegotiated) -> None:
        self.name = name
        self.path = path
        self.target = f"unix://{path}"
        self.options = options
        self.channel = grpc.aio.insecure_channel(self.target, options=channel_options(options))
        self.api: str | None = None if options.upstream_api == "auto" else options.upstream_api
        self.events: str | None = None  # EVENTS_NATIVE / EVENTS_MISSING / None (unknown)
        self.speaks: tuple[str, ...] = ()  # every CRI version it was found to serve
        self.stale = True
        self._lock = asyncio.Lock()
        self._on_negotiated = on_negotiated
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

    async def current(self) -> str | None:
        """The version to speak now; re-probes first when the last one may be out of date."""
        if self.stale:
            await self.negotiate()
        return self.api

    def mark_unavailable(self) -> None:
        """A forwarded call failed UNAVAILABLE: probe again before the next call."""
        self.stale = True

    async def negotiate(self) -> str | None:
        async with self._lock:
            if not self.stale:
                return self.api
            before = self.api
            if self.options.upstream_api == "auto":
                found = await self._probe_version()
            else:
                found = self.options.upstream_api
                if not await self._reachable(found):
                    found = None
            if found is None:
                return self.api  # unreachable: keep the last answer, stay stale
            self.api = found
            self.speaks = (found,)
            if found == "v1" and self.options.upstream_api == "auto":
                # containerd 1.6 serves both: its v1alpha2 clients need no translation
                v1alpha2 = await self._call(f"/runtime.v1alpha2.{PROBES[self.name]}", self.options.probe_timeout)
                if v1alpha2 == grpc.StatusCode.OK:
                    self.speaks = ("v1", "v1alpha2")
            if self.name == "runtime" and self.options.emulate_events:
                self.events = await self._probe_events(found)
            self.stale = False
            level = logging.INFO if found != before else logging.DEBUG
            log.log(level, "upstream %s (%s) speaks CRI %s%s", self.name, self.target, " and ".join(self.speaks),
                    f", container events {self.events}" if self.events else "")
            self._on_negotiated(self.name, found)
            return found

    async def _call(self, path: str, timeout: float) -> grpc.StatusCode:
        call = self.channel.unary_unary(path, None, None)
        try:
            await call(b"", timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    async def _probe_version(self) -> str | None:
        for version in ("v1", "v1alpha2"):
            code = await self._call(f"/runtime.{version}.{PROBES[self.name]}",
                                    self.options.probe_timeout)
            if code == grpc.StatusCode.OK:
                return version
            if code != grpc.StatusCode.UNIMPLEMENTED:
                log.info("upstream %s (%s): version probe got %s", self.name, self.target, code.name)
                return None
        log.warning("upstream %s (%s) implements neither CRI v1 nor v1alpha2", self.name, self.target)
        return None

    async def _reachable(self, version: str) -> bool:
        code = await self._call(f"/runtime.{version}.{PROBES[self.name]}", self.options.probe_timeout)
        return code != grpc.StatusCode.UNAVAILABLE

    async def _probe_events(self, version: str) -> str | None:
        if version != "v1":
            return EVENTS_MISSING
        call = self.channel.unary_stream("/runtime.v1.RuntimeService/GetContainerEvents", None, None)
        stream = call(b"", timeout=EVENTS_PROBE_S)
        try:
            await stream.read()
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return EVENTS_MISSING
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return EVENTS_NATIVE
            return None
        finally:
            stream.cancel()
        return EVENTS_NATIVE

    async def _watch(self) -> None:
        """Re-negotiate whenever the channel comes back to READY after leaving it."""
        ready = grpc.ChannelConnectivity.READY
        state = self.channel.get_state(try_to_connect=True)
        while True:
            await self.channel.wait_for_state_change(state)
            new = self.channel.get_state(try_to_connect=True)
            if state == ready and new != ready:
                log.info("upstream %s (%s) connection lost (%s)", self.name, self.target, new.name)
                self.stale = True
            if new == ready and self.stale:
                try:
                    await self.negotiate()
                except Exception:  # a probe must never end the watcher
                    log.exception("upstream %s: negotiation failed", self.name)
            state = new


class Negotiator:
    """The upstreams of one bridge and what each speaks."""

    def __init__(self, runtime: pathlib.Path, image: pathlib.Path | None, options: BridgeOptions,
                 on_negotiated: OnNegotiated | None = None) -> None:
        self._callback = on_negotiated
        self.runtime = Upstream("runtime", runtime, options, self._report)
        self.image = (Upstream("image", image, options, self._report)
                      if image is not None and image != runtime else None)

    def _report(self, service: str, version: str | None) -> None:
        if self._callback is not None:
            try:
                self._callback(service, version)
            except Exception:
                log.exception("on_negotiated callback failed for %s", service)

    def upstream(self, key: str) -> Upstream:
        return self.image if key == "image" and self.image is not None else self.runtime

    async def start(self) -> None:
        for up in self.upstreams():
            await up.negotiate()
            up.start()

    def upstreams(self) -> list[Upstream]:
        return [self.runtime] + ([self.image] if self.image is not None else [])

    async def close(self) -> None:
        for up in self.upstreams():
            await up.close()

    @property
    def negotiated(self) -> dict[str, str | None]:
        image = self.image or self.runtime
        return {"runtime": self.runtime.api, "image": image.api, "events": self.runtime.events,
                "runtime_speaks": ",".join(self.runtime.speaks) or None,
                "image_speaks": ",".join(image.speaks) or None}
