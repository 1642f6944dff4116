"""The one version prober: what CRI versions the upstreams speak, asked without gRPC's machinery.

The relay must know this to route a connection (to the runtime, or to the translating
bridge), and the bridge to know which version to speak; both read the prober's answer, an
`UpstreamApis`. The question is asked with one raw HTTP/2 call per probe (an empty request;
only the `grpc-status` of the answer matters): v1 `Version`, v1alpha2 `Version`
(`ImageFsInfo` for an image endpoint), and, when events are to be emulated, whether
`GetContainerEvents` exists.

Probing never stands between a client and its bytes: readers take the last answer, and
whatever suggests the upstream changed (an upstream connection that closed or could not be
made, an UNIMPLEMENTED or UNAVAILABLE the bridge saw) asks for a probe in the background,
at most one in flight per prober; a request made while one runs is folded into one more
round after it. A probe that gets no answer (refused, timed out, out of file descriptors,
any status but OK or UNIMPLEMENTED) decides nothing: the last answer stays, and the round is
tried again with a growing delay until one answers.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import Callable
from typing import TypeVar

from hpack import Decoder, Encoder
from hyperframe.frame import DataFrame, HeadersFrame, SettingsFrame

from cri_proxy.h2 import frames as h2
from cri_proxy.model.cri import API_VERSIONS
from cri_proxy.model.status import StatusCode, status_name
from cri_proxy.model.upstream import EVENTS_MISSING, EVENTS_NATIVE, EVENTS_UNKNOWN, UNKNOWN, Events, UpstreamApis

log = logging.getLogger(__name__)
T = TypeVar("T")

PROBES = {"runtime": "RuntimeService/Version", "image": "ImageService/ImageFsInfo"}
EVENTS_PROBE = "/runtime.v1.RuntimeService/GetContainerEvents"
EVENTS_PROBE_S = 0.3  # a runtime with events keeps the stream open; one without answers at once


async def grpc_status(path: pathlib.Path, method: str, timeout: float) -> int | None:
    """The grpc-status a unary call of `method` with an empty request gets; None when the
    socket cannot be reached or no status arrives within `timeout` seconds."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    try:
        return await asyncio.wait_for(_exchange(reader, writer, method), timeout)
    except (OSError, asyncio.TimeoutError, h2.FrameError, ValueError):
        return None
    finally:
        writer.close()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str) -> int | None:
    headers = Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", method),
                                (":authority", "localhost"), ("content-type", "application/grpc"),
                                ("te", "trailers")])
    writer.write(h2.PREFACE + SettingsFrame(0).serialize()
                 + HeadersFrame(1, data=headers, flags=["END_HEADERS"]).serialize()
                 + DataFrame(1, data=b"\0\0\0\0\0", flags=["END_STREAM"]).serialize())
    walker, decoder, block = h2.FrameWalker(frozenset(range(256))), Decoder(), b""
    while chunk := await reader.read(65536):
        for frame in walker.feed(chunk):
            if frame.type == h2.SETTINGS and not frame.flags & h2.FLAG_ACK:
                writer.write(SettingsFrame(0, flags=["ACK"]).serialize())
            elif frame.type in (h2.HEADERS, h2.CONTINUATION) and frame.stream_id == 1:
                block += h2.header_block_fragment(frame)
                if frame.flags & h2.FLAG_END_HEADERS:
                    found = dict(decoder.decode(block, raw=True)).get(b"grpc-status")
                    if found is not None:
                        return int(found)
                    block = b""
            elif frame.type in (h2.RST_STREAM, h2.GOAWAY):
                return None
    return None


class VersionProber:
    """What the runtime (and the image endpoint, when it has its own) speaks, kept current."""

    def __init__(self, runtime: pathlib.Path, image: pathlib.Path | None = None, *, emulate_events: bool = False,
                 on_change: Callable[[UpstreamApis], None] | None = None,
                 on_trouble: Callable[[str | None], None] | None = None, timeout: float = 2.0,
                 backoff: float = 0.1, max_backoff: float = 5.0) -> None:
        self.paths = {"runtime": runtime, **({"image": image} if image is not None and image != runtime else {})}
        self.emulate_events = emulate_events
        self.on_change = on_change  # a new answer
        self.on_trouble = on_trouble  # probes stopped getting answers (a reason), or got one again (None)
        self.timeout = timeout
        self.backoff, self.max_backoff = backoff, max_backoff
        self.apis: UpstreamApis = UNKNOWN
        self.trouble: str | None = None  # why the last round got no answer, while it lasts
        self.rounds = 0  # rounds finished, answered or not
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._wake = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []

    def probe_soon(self) -> None:
        """Ask again in the background; never waits. Coalesced: one probe in flight at most."""
        self._again = True
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="version-probe")

    async def reprobe(self) -> UpstreamApis:
        """Ask again and wait for that round to finish; the answer (the last one if none came)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.probe_soon()
        await asyncio.shield(waiter)
        return self.apis

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for waiter in self._waiters:
            waiter.cancel()

    async def _run(self) -> None:
        delay = self.backoff
        while self._again:
            self._again = False
            self._wake.clear()
            waiters, self._waiters = self._waiters, []
            try:
                found = await self._round()
            finally:
                self.rounds += 1
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
            if found is not None:
                self._answered(found)
                delay = self.backoff
                continue
            self._again = True  # no answer decides nothing: ask again after a pause
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, self.max_backoff)

    def _answered(self, found: UpstreamApis) -> None:
        before, self.apis = self.apis, found  # first: a callback may read it
        if self.trouble is not None:
            log.info("the version probe is answered again")
            self.trouble = None
            self._tell(self.on_trouble, None)
        if found == before:
            return
        log.info("the runtime speaks %s%s", found.describe(),
                 f" (it spoke {before.describe()} before)" if before.known else "")
        self._tell(self.on_change, found)

    @staticmethod
    def _tell(callback: Callable[[T], None] | None, value: T) -> None:
        if callback is not None:
            try:
                callback(value)
            except Exception:  # a reader's failure must not stop the prober
                log.exception("a version prober callback failed")

    async def _round(self) -> UpstreamApis | None:
        """One probe of every upstream; None when any of them gave no answer."""
        names = list(self.paths)
        results = await asyncio.gather(*(self._speaks(name) for name in names))
        found = dict(zip(names, results))
        if any(speaks is None for speaks in found.values()):
            return None
        runtime = found["runtime"] or ()
        image = found.get("image", runtime) or ()
        return UpstreamApis(runtime, image, await self._events(runtime))

    async def _speaks(self, service: str) -> tuple[str, ...] | None:
        """The versions `service` serves, v1 first; None when a probe got no answer."""
        path, speaks = self.paths[service], []
        for version in API_VERSIONS:
            status = await grpc_status(path, f"/runtime.{version}.{PROBES[service]}", self.timeout)
            if status == StatusCode.OK:
                speaks.append(version)
            elif status != StatusCode.UNIMPLEMENTED:
                self._no_answer(service, path, version, status)
                return None
        if not speaks:  # an answer all the same: routing relays straight, as to an unknown upstream
            log.warning("the %s endpoint unix://%s implements neither CRI v1 nor v1alpha2", service, path)
        return tuple(speaks)

    def _no_answer(self, service: str, path: pathlib.Path, version: str, status: int | None) -> None:
        reason = (f"the {service} endpoint unix://{path} " +
                  ("gave no answer" if status is None else f"answered {status_name(status) or status}") +
                  f" to the CRI {version} version probe")
        if reason != self.trouble:
            log.warning("%s; keeping the last answer (%s) and asking again", reason, self.apis.describe())
            self.trouble = reason
            self._tell(self.on_trouble, reason)

    async def _events(self, runtime: tuple[str, ...]) -> Events:
        if not self.emulate_events:
            return EVENTS_UNKNOWN
        if "v1" not in runtime:
            return EVENTS_MISSING  # only CRI v1 has GetContainerEvents
        status = await grpc_status(self.paths["runtime"], EVENTS_PROBE, EVENTS_PROBE_S)
        return EVENTS_MISSING if status == StatusCode.UNIMPLEMENTED else EVENTS_NATIVE
