"""Which CRI version a runtime speaks, asked the way the kubelet asks it.

`Version` (RuntimeService) or `ImageFsInfo` (ImageService) in runtime.v1 first; on
UNIMPLEMENTED, the same in runtime.v1alpha2. Anything else (a dead socket, a timeout) is
"unknown" (None): the proxy still relays, it just cannot say.
"""

from __future__ import annotations

import logging
import pathlib

import grpc

log = logging.getLogger(__name__)

PROBES = {"runtime": "RuntimeService/Version", "image": "ImageService/ImageFsInfo"}


def _same(data: bytes) -> bytes:
    return data


async def probe_api(path: pathlib.Path, service: str = "runtime", timeout: float = 2.0) -> str | None:
    """"v1", "v1alpha2", or None when the runtime at `path` answers neither."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(f"unix://{path}", options=options) as channel:
        for version in ("v1", "v1alpha2"):
            call = channel.unary_unary(f"/runtime.{version}.{PROBES[service]}",
                                       request_serializer=_same, response_deserializer=_same)
            try:
                await call(b"", timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    continue
                log.info("could not ask unix://%s which CRI version it speaks: %s %s",
                         path, exc.code().name, exc.details())
                return None
            return version
    return None
