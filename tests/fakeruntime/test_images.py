"""cri_proxy/fakeruntime/images.py: references qualified as containerd does, and the image store."""

from __future__ import annotations

import pytest

from cri_proxy.fakeruntime.images import ImageStore, normalize_reference


@pytest.mark.parametrize(("ref", "full"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("nginx:1.25", "docker.io/library/nginx:1.25"),
    ("bitnami/redis", "docker.io/bitnami/redis:latest"),
    ("quay.io/x/y", "quay.io/x/y:latest"),
    ("localhost/app:dev", "localhost/app:dev"),
    ("registry:5000/app", "registry:5000/app:latest"),
    ("busybox@sha256:abc", "docker.io/library/busybox@sha256:abc"),
])
def test_normalize_reference(ref: str, full: str) -> None:
    assert normalize_reference(ref) == full


def test_pull_find_and_remove() -> None:
    store = ImageStore(preload=())
    img = store.pull("nginx:1.25")
    assert img.repo_tags == ["docker.io/library/nginx:1.25"] and 1_000_000 <= img.size < 65_000_000
    assert store.pull("docker.io/library/nginx:1.25") is img  # idempotent
    assert store.find(img.id) is img and store.find(img.id[7:19]) is img  # id, and a 12-hex prefix
    assert store.find(img.repo_digests[0]) is img
    assert store.find(img.id[7:15]) is None  # too short to be an id prefix
    assert store.total_size() == img.size
    assert store.remove("nginx:1.25") is img and store.list() == []
    assert store.remove("nginx:1.25") is None  # absent: not an error


def test_a_pull_by_digest_has_no_tag_and_an_empty_ref_is_refused() -> None:
    store = ImageStore(preload=())
    by_digest = store.pull("busybox@sha256:" + "1" * 64)
    assert by_digest.repo_tags == []
    with pytest.raises(ValueError, match="image reference is empty"):
        store.pull("  ")
    assert store.find("") is None


def test_the_default_store_has_pause_and_busybox() -> None:
    tags = {t for img in ImageStore().list() for t in img.repo_tags}
    assert tags == {"registry.k8s.io/pause:3.9", "docker.io/library/busybox:latest"}
