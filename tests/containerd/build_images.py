"""Build the OCI image layout tarballs the containerd integration tests import.

No registry is reachable in CI, so the images are made here from local files with the standard
library only:

- ``localhost/cri-proxy/pause:1.0``: one static C program (``gcc -static``) that waits for a
  signal, the sandbox image.
- ``localhost/cri-proxy/busybox:1.0``: Debian's busybox-static with applet symlinks
  (sh, echo, cat, sleep, ...), the container image.
- ``localhost/cri-proxy/throwaway:1.0``: one text file, an image of its own that tests import
  and then remove (CRI RemoveImage removes every tag of an image, so it cannot be a mere tag).

Each tarball is an OCI image layout (oci-layout, index.json whose manifest carries the
``org.opencontainers.image.ref.name`` annotation, the manifest, the config and one gzipped tar
layer) that ``ctr -n k8s.io images import FILE`` accepts. Outputs are cached in
``tests/containerd/.images/`` and rebuilt when missing or when this script has changed (a stamp
file holds the script's digest).

Run: ``python tests/containerd/build_images.py [--out DIR] [--force]``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_OUT = HERE / ".images"

PAUSE_REF = "localhost/cri-proxy/pause:1.0"
BUSYBOX_REF = "localhost/cri-proxy/busybox:1.0"
THROWAWAY_REF = "localhost/cri-proxy/throwaway:1.0"
PAUSE_TAR = "pause.tar"
BUSYBOX_TAR = "busybox.tar"
THROWAWAY_TAR = "throwaway.tar"

BUSYBOX_BIN = pathlib.Path("/bin/busybox")
BUSYBOX_APPLETS = (
    "sh", "echo", "cat", "sleep", "ls", "true", "false", "env", "id", "ps", "hostname",
    "mkdir", "rm", "touch", "printf", "test", "wc", "head", "tail", "grep", "kill",
)

# A fixed timestamp keeps the layers, and so the image digests, stable across builds.
EPOCH = 0
CREATED = "1970-01-01T00:00:00Z"

PAUSE_C = r"""
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
}

int main(void) {
    signal(SIGINT, quit);
    signal(SIGTERM, quit);
    signal(SIGCHLD, reap);
    for (;;) pause();
    return 1;
}
"""


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = EPOCH
    return info


def _file_info(name: str, size: int, mode: int = 0o755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = EPOCH
    return info


def _symlink_info(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    info.mode = 0o777
    info.mtime = EPOCH
    return info


def _layer(entries: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> tuple[bytes, str]:
    """Return (gzipped layer, diff id): the diff id is the digest of the uncompressed tar."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=EPOCH), _sha256(tar_bytes)


def _layout_tarball(path: pathlib.Path, ref: str, layer: bytes, diff_id: str, config: dict[str, Any]) -> None:
    """Write an OCI image layout tarball holding one single-layer image named ``ref``."""
    image_config = {
        "created": CREATED,
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": "tests/containerd/build_images.py"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _sha256(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": _sha256(layer),
            "size": len(layer),
        }],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": _sha256(manifest_bytes),
            "size": len(manifest_bytes),
            "annotations": {"org.opencontainers.image.ref.name": ref},
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True).encode(),
    }
    for blob in (config_bytes, manifest_bytes, layer):
        files["blobs/sha256/" + _sha256(blob).removeprefix("sha256:")] = blob

    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirname in ("blobs", "blobs/sha256"):
            tar.addfile(_dir_info(dirname))
        for name, data in files.items():
            tar.addfile(_file_info(name, len(data), 0o644), io.BytesIO(data))
    tmp.replace(path)


def _compile_pause(workdir: pathlib.Path) -> bytes:
    source = workdir / "pause.c"
    source.write_text(PAUSE_C)
    binary = workdir / "pause"
    subprocess.run(["gcc", "-static", "-Os", "-s", "-o", str(binary), str(source)], check=True)
    return binary.read_bytes()


def build_pause(out: pathlib.Path) -> pathlib.Path:
    path = out / PAUSE_TAR
    with tempfile.TemporaryDirectory() as tmp:
        binary = _compile_pause(pathlib.Path(tmp))
    layer, diff_id = _layer([(_file_info("pause", len(binary)), binary)])
    _layout_tarball(path, PAUSE_REF, layer, diff_id, {"Entrypoint": ["/pause"]})
    return path


def build_busybox(out: pathlib.Path) -> pathlib.Path:
    path = out / BUSYBOX_TAR
    binary = BUSYBOX_BIN.read_bytes()
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (_dir_info("bin"), None),
        (_file_info("bin/busybox", len(binary)), binary),
    ]
    entries += [(_symlink_info("bin/" + applet, "busybox"), None) for applet in BUSYBOX_APPLETS]
    # Empty mount points and a writable /tmp, as containers expect them.
    for name in ("dev", "proc", "sys", "etc", "tmp", "root"):
        entries.append((_dir_info(name), None))
    layer, diff_id = _layer(entries)
    config = {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"}
    _layout_tarball(path, BUSYBOX_REF, layer, diff_id, config)
    return path


def build_throwaway(out: pathlib.Path) -> pathlib.Path:
    path = out / THROWAWAY_TAR
    text = b"an image made to be removed\n"
    layer, diff_id = _layer([(_file_info("throwaway.txt", len(text), 0o644), text)])
    _layout_tarball(path, THROWAWAY_REF, layer, diff_id, {"Labels": {"cri-proxy.test/role": "throwaway"}})
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="cache folder")
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args(argv)

    if shutil.which("gcc") is None or not BUSYBOX_BIN.exists():
        print("build_images: needs gcc, libc6-dev and busybox-static (tests/containerd/setup.sh)",
              file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = args.out / "stamp"
    digest = hashlib.sha256(pathlib.Path(__file__).read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text().strip() != digest:
        args.force = True
    builds = ((PAUSE_TAR, build_pause), (BUSYBOX_TAR, build_busybox), (THROWAWAY_TAR, build_throwaway))
    for name, build in builds:
        if args.force or not (args.out / name).exists():
            path = build(args.out)
            print(f"build_images: wrote {path} ({path.stat().st_size} bytes)")
        else:
            print(f"build_images: cached {args.out / name}")
    stamp.write_text(digest + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
