"""`cri-proxy doctor`: is this node wired through the proxy, and is each piece alive?

Reads the node under its root and never changes it: the kubelet's flags (a running kubelet's
/proc/PID/cmdline, else kubelet.service) and config file, which socket it dials, whether that
is the proxy's, whether the proxy's and the runtime's sockets answer (a connect() on the unix
socket: cheap, and enough to tell a live server from a stale file), the proxy socket's mode
and group, and the recording: presence, size, `PRAGMA quick_check`, the last call's age.
Each check is pass, warn or fail, with the fix; any fail makes the exit status 1.
"""

from __future__ import annotations

import grp
import os
import socket
import stat
import time
from dataclasses import dataclass

from cri_proxy.model.endpoints import unix_path
from cri_proxy.model.errors import CriProxyError, StorageError
from cri_proxy.node import kubelet as kl
from cri_proxy.node.paths import CRIO_SUFFIX, DEFAULT_KUBELET_CONFIG, UNIT_PATH, NodeRoot
from cri_proxy.node.systemd import expand_command, parse_unit

PASS, WARN, FAIL = "pass", "warn", "fail"
STALE_S = 120.0  # an idle kubelet calls several times a second: minutes of silence mean no recording
CONNECT_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass, warn or fail
    detail: str
    fix: str | None = None


def proxy_flags(node: NodeRoot) -> dict[str, str] | None:
    """The `cri-proxy run` flags of the installed unit's ExecStart=, or None without a unit."""
    text = node.read_text(UNIT_PATH)
    if text is None:
        return None
    starts = parse_unit(text).get("Service", {}).get("ExecStart", [])
    argv = expand_command(starts[-1].lstrip("-@:+!"), {}) if starts else []
    return kl.parse_flags(argv[argv.index("run") + 1:] if "run" in argv else [])


def probe_socket(node: NodeRoot, endpoint: str) -> tuple[bool, str]:
    """(answers, what was seen) for the unix socket `endpoint` on the node."""
    try:
        path = node.at(str(unix_path(endpoint)))
    except CriProxyError as exc:
        return False, str(exc)
    try:
        st = path.stat()
    except FileNotFoundError:
        return False, f"{endpoint}: no such file"
    if not stat.S_ISSOCK(st.st_mode):
        return False, f"{endpoint}: exists but is not a socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(str(path))
        except OSError as exc:
            return False, f"{endpoint}: a socket file, but connect() fails: {exc.strerror or exc}"
    return True, f"{endpoint} answers"


def _kubelet_checks(view: kl.KubeletView) -> list[Check]:
    checks = []
    status = PASS if view.source.startswith("the running") else WARN
    checks.append(Check("kubelet", status, f"flags read from {view.source}",
                        None if status == PASS else "start the kubelet to check what it really uses"))
    if view.flags.get("--config") and not view.config:
        checks.append(Check("kubelet config", FAIL, f"--config names {view.config_path}, which is missing or "
                            "empty", "restore the kubelet's config file"))
    elif view.config_path:
        checks.append(Check("kubelet config", PASS, f"{view.config_path}"))
    return checks


def _wiring(view: kl.KubeletView, flags: dict[str, str] | None) -> list[Check]:
    runtime, where = view.endpoint()
    image, image_where = view.endpoint(image=True)
    if flags is None:
        return [Check("proxy unit", FAIL, f"no {UNIT_PATH}; the kubelet dials {runtime} ({where})",
                      "run `cri-proxy install`")]
    listen = flags.get("--listen", "")
    checks = [Check("proxy unit", PASS, f"{UNIT_PATH}: listens on {listen}, runtime "
                    f"{flags.get('--runtime-endpoint')}")]
    for what, endpoint, source in (("runtime", runtime, where), ("image", image, image_where)):
        if _same(endpoint, listen):
            checks.append(Check(f"kubelet {what} endpoint", PASS, f"{endpoint} ({source}) is the proxy's socket"))
        else:
            checks.append(Check(f"kubelet {what} endpoint", FAIL, f"the kubelet dials {endpoint} ({source}), not "
                                f"the proxy's {listen}", "run `cri-proxy uninstall` then `cri-proxy install`, or "
                                f"point {source} at {listen}; then restart the kubelet"))
    if flags.get("--runtime-endpoint", "").endswith(CRIO_SUFFIX) and not listen.endswith(CRIO_SUFFIX):
        checks.append(Check("crio socket name", WARN, f"{listen} does not end in {CRIO_SUFFIX}: the kubelet "
                            "takes CRI stats instead of cAdvisor's", f"listen on /run/cri-proxy/{CRIO_SUFFIX}"))
    return checks


def _same(a: str, b: str) -> bool:
    try:
        return os.path.normpath(str(unix_path(a))).replace("/var/run/", "/run/", 1) == \
            os.path.normpath(str(unix_path(b))).replace("/var/run/", "/run/", 1)
    except CriProxyError:
        return False


def _sockets(node: NodeRoot, flags: dict[str, str]) -> list[Check]:
    checks = []
    listen = flags.get("--listen", "")
    ok, seen = probe_socket(node, listen)
    checks.append(Check("proxy socket", PASS if ok else FAIL, seen,
                        None if ok else "systemctl restart cri-proxy; journalctl -u cri-proxy says why it is down"))
    if ok:
        st = node.at(str(unix_path(listen))).stat()
        mode = stat.S_IMODE(st.st_mode)
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        open_to_all = bool(mode & 0o007)
        checks.append(Check("proxy socket access", WARN if open_to_all else PASS,
                            f"mode {mode:04o}, group {group}" + (": anyone on the node may use it, which is root "
                                                                 "on the node" if open_to_all else ""),
                            "--socket-mode 0660 in the unit" if open_to_all else None))
    for flag, what in (("--runtime-endpoint", "runtime socket"), ("--image-endpoint", "image socket")):
        if flags.get(flag):
            ok, seen = probe_socket(node, flags[flag])
            checks.append(Check(what, PASS if ok else FAIL, seen + " (behind the proxy)",
                                None if ok else "start the runtime (systemctl start containerd or crio)"))
    return checks


def _database(node: NodeRoot, flags: dict[str, str], now: float) -> list[Check]:
    import sqlite3  # only this check needs it

    from cri_proxy.store.readonly import Recording

    if not flags.get("--db"):
        return [Check("recording", PASS, "off (the unit has no --db)")]
    path = node.at(flags["--db"])
    if not path.exists():
        return [Check("recording", WARN, f"{flags['--db']} does not exist yet",
                      "the proxy creates it when it starts: systemctl status cri-proxy")]
    size = path.stat().st_size + sum(os.path.getsize(f"{path}{s}") for s in ("-wal",) if os.path.exists(f"{path}{s}"))
    try:
        recording = Recording(path)
    except StorageError as exc:
        return [Check("recording", FAIL, str(exc), "move the file aside; the proxy starts a new one")]
    try:
        result = [str(r[0]) for r in recording.conn.execute("PRAGMA quick_check")]
        last = recording.conn.execute("SELECT started_unix FROM calls ORDER BY started_unix DESC LIMIT 1").fetchone()
    except sqlite3.Error as exc:
        return [Check("recording", FAIL, f"{flags['--db']}: {exc}", "move the file aside; the proxy starts a new one")]
    finally:
        recording.close()
    checks = [Check("recording", PASS if result == ["ok"] else FAIL,
                    f"{flags['--db']}: {size / 1e6:.1f} MB, quick_check {'; '.join(result[:3])}",
                    None if result == ["ok"] else "move the file aside; the proxy starts a new one")]
    if last is None:
        checks.append(Check("last call", WARN, "no call recorded yet", "is the kubelet running through the proxy?"))
    else:
        age = now - float(last[0])
        checks.append(Check("last call", PASS if age <= STALE_S else WARN, f"{_age(age)} ago",
                            None if age <= STALE_S else "the kubelet calls every second: is it dialing the proxy?"))
    return checks


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def diagnose(node: NodeRoot, kubelet_config: str = DEFAULT_KUBELET_CONFIG, now: float | None = None) -> list[Check]:
    """Every check, in the order a reader follows a call: kubelet, proxy, runtime, recording."""
    view = kl.inspect(node, kubelet_config)
    flags = proxy_flags(node)
    checks = _kubelet_checks(view) + _wiring(view, flags)
    if flags is not None:
        checks += _sockets(node, flags) + _database(node, flags, time.time() if now is None else now)
    return checks
