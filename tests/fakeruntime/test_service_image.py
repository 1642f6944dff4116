"""cri_proxy/fakeruntime/service_image.py: the fake ImageService over real gRPC: list, status, pull, remove, fs info."""

from __future__ import annotations

import pathlib

import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers.fakeruntime import serve

pytestmark = pytest.mark.timeout(10)


async def test_images(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir) as (_, ch):
        img = v1_grpc.ImageServiceStub(ch)
        listed = (await img.ListImages(v1.ListImagesRequest())).images
        tags = {t for i in listed for t in i.repo_tags}
        assert tags == {"registry.k8s.io/pause:3.9", "docker.io/library/busybox:latest"}
        assert all(i.id.startswith("sha256:") and i.size > 0 for i in listed)

        spec = v1.ImageSpec(image="nginx:1.25")
        absent = await img.ImageStatus(v1.ImageStatusRequest(image=spec))
        assert not absent.HasField("image")
        ref = (await img.PullImage(v1.PullImageRequest(image=spec))).image_ref
        present = await img.ImageStatus(v1.ImageStatusRequest(image=spec, verbose=True))
        assert present.image.id == ref and present.image.repo_tags == ["docker.io/library/nginx:1.25"]
        assert "info" in present.info
        assert (await img.PullImage(v1.PullImageRequest(image=spec))).image_ref == ref
        only = await img.ListImages(v1.ListImagesRequest(filter=v1.ImageFilter(image=spec)))
        assert [i.id for i in only.images] == [ref]

        fs = (await img.ImageFsInfo(v1.ImageFsInfoRequest())).image_filesystems[0]
        total = sum(i.size for i in (await img.ListImages(v1.ListImagesRequest())).images)
        assert fs.used_bytes.value == total
        await img.RemoveImage(v1.RemoveImageRequest(image=v1.ImageSpec(image=ref)))
        assert not (await img.ImageStatus(v1.ImageStatusRequest(image=spec))).HasField("image")
        await img.RemoveImage(v1.RemoveImageRequest(image=spec))  # absent: still OK
