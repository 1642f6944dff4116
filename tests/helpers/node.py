"""Scratch nodes for the node commands' tests: a kubelet's unit files, config and env files
written under a temporary root as kubeadm and Debian's packages lay them out, a kubelet
process entry under the root's /proc, real listening unix sockets, a hash of the whole tree,
and systemd's own verifier."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from cri_proxy.node.paths import NodeRoot

KUBELET_UNIT = """[Unit]
Description=kubelet: The Kubernetes Node Agent

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
"""
# kubeadm's drop-in, as its deb package ships it.
KUBEADM_DROPIN = """# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
--kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""
CONFIG_YAML = """apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
cgroupDriver: systemd
containerRuntimeEndpoint: "unix:///var/run/containerd/containerd.sock"   # kubeadm wrote this
evictionHard:
  containerRuntimeEndpoint: not-top-level
"""
CONFIG_NO_ENDPOINT = """apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
"""


def write(root: Path, node_path: str, text: str, mode: int = 0o644) -> Path:
    path = NodeRoot(root).at(node_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def kubeadm_node(root: Path, config: str | None = CONFIG_YAML, flags_env: str | None = None,
                 default_env: str | None = None) -> NodeRoot:
    """A kubeadm node: kubelet.service from the package, 10-kubeadm.conf, the config file
    (mode 0600, so the tests see install keep a file's mode) and the optional env files."""
    write(root, "/lib/systemd/system/kubelet.service", KUBELET_UNIT)
    write(root, "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", KUBEADM_DROPIN)
    if config is not None:
        write(root, "/var/lib/kubelet/config.yaml", config, mode=0o600)
    if flags_env is not None:
        write(root, "/var/lib/kubelet/kubeadm-flags.env", flags_env)
    if default_env is not None:
        write(root, "/etc/default/kubelet", default_env)
    return NodeRoot(root)


def kubelet_process(root: Path, pid: int, argv: list[str]) -> None:
    """A process entry under the root's /proc, as the kernel shows a running kubelet."""
    path = NodeRoot(root).at(f"/proc/{pid}/cmdline")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def tree(root: Path) -> dict[str, tuple[str, ...]]:
    """Every file, folder and symlink under root: its kind, mode, owner and content hash."""
    found: dict[str, tuple[str, ...]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            st = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if kind == "file" else (
                os.readlink(path) if kind == "link" else "")
            found[str(path.relative_to(root))] = (kind, oct(st.st_mode), str(st.st_uid), str(st.st_gid), digest)
    return found


@contextlib.contextmanager
def listening(path: Path) -> Iterator[socket.socket]:
    """A real unix socket listening at path (connect() succeeds) until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        sock.listen(8)
        yield sock
    finally:
        sock.close()
        path.unlink(missing_ok=True)


def dead_socket(path: Path) -> None:
    """A socket file nobody listens on any more: what a crashed server leaves behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))


def block(output: str, node_path: str) -> str:
    """The text of `node_path` between the begin/end lines of `cri-proxy install --dry-run`."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"----- begin {node_path} "))
    end = lines.index(f"----- end {node_path} -----", start)
    return "\n".join(lines[start + 1:end]) + "\n"


def systemd_analyze() -> str | None:
    return shutil.which("systemd-analyze")


def verify_unit(unit_text: str, folder: Path, runtime_unit: str = "containerd.service") -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify on the unit, beside stand-ins for the units it names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cri-proxy.service").write_text(unit_text)
    for name in ("kubelet.service", runtime_unit):
        (folder / name).write_text("[Service]\nExecStart=/bin/true\n")
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(folder / "cri-proxy.service")],
                          capture_output=True, text=True, timeout=60,
                          env={"SYSTEMD_UNIT_PATH": f"{folder}:", "PATH": "/usr/bin:/bin"})


def program() -> tuple[str, ...]:
    """The command the tests' units run: this interpreter's cri-proxy (it exists, so verify passes)."""
    return (sys.executable, "-m", "cri_proxy")
