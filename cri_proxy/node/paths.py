"""The node's file system as seen from a root folder: `/` on a node, a scratch folder in tests.

Every path the node modules handle is the node's own absolute path (what the kubelet and
systemd see, and what goes into unit files); `NodeRoot.at()` turns it into the file to read
or write. Only these constants name places on a node.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

UNIT_PATH = "/etc/systemd/system/cri-proxy.service"
DROPIN_DIR = "/etc/systemd/system/kubelet.service.d"
DROPIN_PATH = DROPIN_DIR + "/10-cri-proxy.conf"
RUN_DIR = "/run/cri-proxy"
STATE_DIR = "/var/lib/cri-proxy"
DEFAULT_DB = STATE_DIR + "/calls.db"
MANIFEST_PATH = STATE_DIR + "/install.json"
BACKUP_DIR = STATE_DIR + "/install-backup"
DEFAULT_KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
# Where systemd looks for kubelet.service, most important first (systemd.unit(5)).
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
             "/lib/systemd/system", "/usr/lib/systemd/system")
# The kubelet's built-in default since 1.27 (before, it had none and the flag was required).
KUBELET_DEFAULT_ENDPOINT = "unix:///run/containerd/containerd.sock"
CRIO_SUFFIX = "run/crio/crio.sock"  # the kubelet's CrioSocketSuffix (pkg/kubelet/cadvisor)


@dataclass(frozen=True)
class NodeRoot:
    """A node's file system rooted at `root`."""

    root: Path

    def at(self, node_path: str) -> Path:
        """The file that is `node_path` on the node (an absolute path)."""
        if not node_path.startswith("/"):
            raise ValueError(f"not an absolute node path: {node_path!r}")
        return self.root / posixpath.normpath(node_path).lstrip("/")

    def node_path(self, path: Path) -> str:
        """The inverse of at(): the node's path of a file under the root."""
        relative = path.relative_to(self.root).as_posix()
        return "/" if relative == "." else "/" + relative

    def read_text(self, node_path: str) -> str | None:
        """The file's text, or None when it does not exist or cannot be read."""
        try:
            return self.at(node_path).read_text(errors="replace")
        except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
            return None
