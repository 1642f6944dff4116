"""ImageService: list, status, pull (into memory), remove, and image filesystem info."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import grpc

from cri_proxy.fakeruntime import stats
from cri_proxy.fakeruntime.config import Context, ServicerBase
from cri_proxy.fakeruntime.images import Image
from cri_proxy.fakeruntime.service_lifecycle import chunks
from cri_proxy.fakeruntime.state import FakeRuntimeError
from cri_proxy.pb.runtime.v1 import api_pb2 as v1

log = logging.getLogger(__name__)


class ImageServicer(ServicerBase):
    """Methods are named as the CRI names them; each takes and returns v1 messages."""

    def _filtered(self, flt: v1.ImageFilter | None) -> list[Image]:
        if flt is None or not flt.image.image:
            return self.state.images.list()
        found = self.state.images.find(flt.image.image)
        return [found] if found is not None else []

    async def ListImages(
        self, request: v1.ListImagesRequest, context: Context
    ) -> v1.ListImagesResponse:
        flt = request.filter if request.HasField("filter") else None
        return v1.ListImagesResponse(images=[img.to_proto() for img in self._filtered(flt)])

    async def StreamImages(
        self, request: v1.StreamImagesRequest, context: Context
    ) -> AsyncIterator[v1.StreamImagesResponse]:
        flt = request.filter if request.HasField("filter") else None
        items = [img.to_proto() for img in self._filtered(flt)]
        for part in chunks(items, self.options.stream_chunk_size):
            yield v1.StreamImagesResponse(images=part)

    async def ImageStatus(
        self, request: v1.ImageStatusRequest, context: Context
    ) -> v1.ImageStatusResponse:
        img = self.state.images.find(request.image.image)
        if img is None:
            # CRI: an absent image is not an error; the reply leaves `image` unset.
            return v1.ImageStatusResponse()
        info = {}
        if request.verbose:
            spec = {"os": "linux", "architecture": "amd64"}
            info["info"] = json.dumps({"chainID": img.id, "imageSpec": spec})
        return v1.ImageStatusResponse(image=img.to_proto(), info=info)

    async def PullImage(
        self, request: v1.PullImageRequest, context: Context
    ) -> v1.PullImageResponse:
        try:
            img = self.state.images.pull(request.image.image)
        except ValueError as exc:
            raise FakeRuntimeError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        return v1.PullImageResponse(image_ref=img.id)

    async def RemoveImage(
        self, request: v1.RemoveImageRequest, context: Context
    ) -> v1.RemoveImageResponse:
        # CRI: removing an absent image is not an error.
        self.state.images.remove(request.image.image)
        return v1.RemoveImageResponse()

    async def ImageFsInfo(
        self, request: v1.ImageFsInfoRequest, context: Context
    ) -> v1.ImageFsInfoResponse:
        return stats.image_fs_info(self.state)
