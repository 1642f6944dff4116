"""The fake runtime's image store: references, ids, preloaded images and pulls into memory.

Nothing is downloaded. A pull of any well-formed reference "succeeds" and records an image
whose id and digest are derived from the reference, so the same reference always gets the
same id, as with a registry that never changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

from cri_proxy.pb.runtime.v1 import api_pb2 as v1

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PreloadedImage:
    """An image present at start-up, with the id and size a real node would report."""

    reference: str
    image_id: str
    size: int
    pinned: bool = False


# The ids and sizes are those containerd reports for these images on linux/amd64.
DEFAULT_IMAGES: tuple[PreloadedImage, ...] = (
    PreloadedImage(
        "registry.k8s.io/pause:3.9",
        "sha256:e6f1816883972d4be47bd48879a08919b96afcd344132622e4d444987919323c",
        321_520,
        pinned=True,
    ),
    PreloadedImage(
        "docker.io/library/busybox:latest",
        "sha256:a416a98b71e224a31ee99cff8e16063554498227d2b696152a9c3e0aa65e5824",
        2_155_731,
    ),
)


@dataclasses.dataclass
class Image:
    """One image in the store."""

    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    size: int
    pinned: bool = False

    def to_proto(self) -> v1.Image:
        return v1.Image(
            id=self.id,
            repo_tags=list(self.repo_tags),
            repo_digests=list(self.repo_digests),
            size=self.size,
            spec=v1.ImageSpec(image=self.id),
            pinned=self.pinned,
        )


def normalize_reference(ref: str) -> str:
    """Fully qualify a reference the way containerd's docker reference parser does.

    `busybox` -> `docker.io/library/busybox:latest`; `quay.io/x/y` -> `quay.io/x/y:latest`;
    digest references are kept as they are.
    """
    ref = ref.strip()
    name, sep, digest = ref.partition("@")
    first, slash, _rest = name.partition("/")
    if not slash:
        name = "docker.io/library/" + name
    elif "." not in first and ":" not in first and first != "localhost":
        name = "docker.io/" + name
    if sep:
        return f"{name}@{digest}"
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        name += ":latest"
    return name


def _repository(ref: str) -> str:
    """The reference without its tag or digest."""
    name = ref.partition("@")[0]
    head, slash, last = name.rpartition("/")
    return head + slash + last.partition(":")[0]


def _digest_of(text: str, salt: str) -> str:
    return "sha256:" + hashlib.sha256(f"{salt}:{text}".encode()).hexdigest()


class ImageStore:
    """Images by id, found by id, short id, tag or digest reference."""

    def __init__(self, preload: tuple[PreloadedImage, ...] = DEFAULT_IMAGES) -> None:
        self._images: dict[str, Image] = {}
        for item in preload:
            ref = normalize_reference(item.reference)
            digest = _digest_of(ref, "manifest")
            self._images[item.image_id] = Image(
                id=item.image_id,
                repo_tags=[ref],
                repo_digests=[f"{_repository(ref)}@{digest}"],
                size=item.size,
                pinned=item.pinned,
            )

    def list(self) -> list[Image]:
        return list(self._images.values())

    def find(self, ref: str) -> Image | None:
        """The image a reference, an id or a unique id prefix (12+ hex) names, if present."""
        if not ref:
            return None
        if ref in self._images:
            return self._images[ref]
        bare = ref.removeprefix("sha256:")
        if len(bare) >= 12 and all(c in "0123456789abcdef" for c in bare):
            hits = [img for img in self._images.values() if img.id[7:].startswith(bare)]
            if len(hits) == 1:
                return hits[0]
        full = normalize_reference(ref)
        for img in self._images.values():
            if full in img.repo_tags or full in img.repo_digests:
                return img
        return None

    def pull(self, ref: str) -> Image:
        """Record the image a reference names and return it (idempotent)."""
        if not ref.strip():
            raise ValueError("image reference is empty")
        found = self.find(ref)
        full = normalize_reference(ref)
        if found is not None:
            if "@" not in full and full not in found.repo_tags:
                found.repo_tags.append(full)
            return found
        repo = _repository(full)
        if "@" in full:
            digest = full.partition("@")[2]
            tags: list[str] = []
        else:
            digest = _digest_of(full, "manifest")
            tags = [full]
        image_id = _digest_of(f"{repo}@{digest}", "config")
        # A plausible size between 1 and 65 MB, stable per reference.
        size = 1_000_000 + int(image_id[7:15], 16) % 64_000_000
        img = Image(id=image_id, repo_tags=tags, repo_digests=[f"{repo}@{digest}"], size=size)
        self._images[image_id] = img
        log.info("pulled image %s as %s", full, image_id)
        return img

    def remove(self, ref: str) -> Image | None:
        """Remove the image a reference names; an absent image is not an error."""
        img = self.find(ref)
        if img is not None:
            del self._images[img.id]
        return img

    def total_size(self) -> int:
        return sum(img.size for img in self._images.values())
