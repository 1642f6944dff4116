"""What CRI versions the upstreams speak, asked without gRPC's own machinery.

The relay must know this to route a connection (to the runtime, or to the translating
bridge), but the bridge and grpcio cost memory and threads a plain relay has no use for. So
the question is asked with one raw HTTP/2 call per probe (an empty request; only the
`grpc-status` of the answer matters): v1 `Version`, v1alpha2 `Version` (`ImageFsInfo` for
an image endpoint), and, when events are to be emulated, whether `GetContainerEvents`
exists. It is asked at start and again before the first connection after an outage, since
a runtime may come back upgraded or downgraded.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import Callable

from hpack import Decoder, Encoder
from hyperframe.frame import DataFrame, HeadersFrame, SettingsFrame

from cri_proxy.h2 import frames as h2

log = logging.getLogger(__name__)

OK, UNIMPLEMENTED = 0, 12
PROBES = {"runtime": "RuntimeService/Version", "image": "ImageService/ImageFsInfo"}


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


class UpstreamVersions:
    """The `negotiated` map the routing reads: runtime/image -> preferred version,
    runtime_speaks/image_speaks -> every version served, events -> native/missing."""

    def __init__(self, runtime: pathlib.Path, image: pathlib.Path | None, emulate_events: bool,
                 on_change: Callable[[dict[str, str | None]], None] | None = None, timeout: float = 2.0) -> None:
        self.paths = {"runtime": runtime, **({"image": image} if image is not None else {})}
        self.emulate_events = emulate_events
        self.on_change = on_change
        self.timeout = timeout
        self.negotiated: dict[str, str | None] = {}
        self.stale = True
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Ask again if the last answer may be out of date (at start, after an outage)."""
        async with self._lock:
            if not self.stale:
                return
            found: dict[str, str | None] = {}
            for service, path in self.paths.items():
                speaks = [v for v in ("v1", "v1alpha2")
                          if await grpc_status(path, f"/runtime.{v}.{PROBES[service]}", self.timeout) == OK]
                found[service] = speaks[0] if speaks else None
                found[f"{service}_speaks"] = ",".join(speaks) or None
            if "image" not in self.paths:
                found["image"], found["image_speaks"] = found["runtime"], found["runtime_speaks"]
            if self.emulate_events and found["runtime"] == "v1":
                status = await grpc_status(self.paths["runtime"], "/runtime.v1.RuntimeService/GetContainerEvents", 0.3)
                found["events"] = "missing" if status == UNIMPLEMENTED else "native"
            reached = found["runtime"] is not None
            self.stale = not reached
            if reached and found != self.negotiated:
                log.info("the runtime speaks CRI %s (RuntimeService) and %s (ImageService)%s",
                         found["runtime_speaks"], found["image_speaks"],
                         f"; container events {found['events']}" if found.get("events") else "")
                self.negotiated = found
                if self.on_change is not None:
                    self.on_change(found)
