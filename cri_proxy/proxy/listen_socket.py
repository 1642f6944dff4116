"""The sockets a daemon start checks: the listen socket's path made free (a stale file left
by a crashed proxy replaced, a live one refused), its mode and group, and the runtime's
sockets present (waited for, if asked) before the proxy starts serving.

Every refusal is a ConfigError (or SocketInUseError) with one line saying what to do; the
CLI turns it into exit status 2. Used by proxy.daemon (the listen and control sockets).
"""

from __future__ import annotations

import grp
import logging
import os
import pathlib
import socket
import stat
import time

from cri_proxy.model.endpoints import as_endpoint
from cri_proxy.model.errors import ConfigError, SocketInUseError

log = logging.getLogger(__name__)


def probe_socket(path: pathlib.Path, timeout: float = 1.0) -> str | None:
    """None when something accepts connections on `path`, else why not (an errno text)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            return exc.strerror or type(exc).__name__
    return None


def prepare_listen_path(path: pathlib.Path, what: str = "listen socket") -> None:
    """Make `path` free for a new socket, or explain why it cannot be."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder {parent} for the {what}: {exc.strerror}") from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create the {what} in {parent}: permission denied")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{what} path {path} exists and is not a socket; refusing to replace it")
    if probe_socket(path) is None:
        raise SocketInUseError(f"{what} {path} is live: another cri-proxy (or another server) is "
                               "serving it; stop that one first")
    path.unlink()
    log.info("replaced the stale socket file %s", path)


def secure_socket(path: pathlib.Path, mode: int, group: str | None) -> None:
    if group is not None:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"--socket-group {group!r}: no such group") from None
        try:
            os.chown(path, -1, gid)
        except OSError as exc:
            raise ConfigError(f"cannot give {path} to group {group}: {exc.strerror}") from exc
    os.chmod(path, mode)


def check_upstream(what: str, path: pathlib.Path, wait: float) -> None:
    """Refuse a runtime socket that does not exist (after waiting up to `wait` seconds)."""
    deadline = time.monotonic() + wait
    while not path.exists():
        if time.monotonic() >= deadline:
            hint = "" if wait else " (pass --wait-for-upstream SECONDS to wait for it)"
            raise ConfigError(f"{what} {as_endpoint(path)}: no such socket; is the runtime running?{hint}")
        time.sleep(0.1)
    if not stat.S_ISSOCK(path.stat().st_mode):
        raise ConfigError(f"{what} {as_endpoint(path)} is not a socket")
    reason = probe_socket(path)
    if reason is not None:
        log.warning("%s %s does not answer yet (%s); clients will fail fast until it does",
                    what, as_endpoint(path), reason)
