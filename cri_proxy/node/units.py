"""The text of the files install writes: the proxy's service unit and the kubelet's drop-in.

Each unit choice is explained in a comment inside the unit itself, so an operator reading
/etc/systemd/system/cri-proxy.service on a node learns why without this repository.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from cri_proxy.model.endpoints import unix_path
from cri_proxy.node.paths import RUN_DIR, STATE_DIR

_BARE = re.compile(r"[A-Za-z0-9_./:=@+,%$-]+")
# A user's home (a venv there) is hidden by ProtectHome=yes; read-only keeps it usable.
_HOME_DIRS = ("/home/", "/root/", "/run/user/")


def systemd_word(word: str, exec_line: bool = True) -> str:
    """One word of an ExecStart= (or, exec_line False, Environment=) line, quoted and escaped
    for systemd: `%` is a specifier in both, `$` a variable only in ExecStart=."""
    word = word.replace("%", "%%")
    if exec_line:
        word = word.replace("$", "$$")
    if _BARE.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class ProxyUnit:
    """What the proxy's unit runs and needs."""

    program: tuple[str, ...]  # the absolute command that is `cri-proxy`
    run_args: tuple[str, ...]  # the `cri-proxy run` flags
    listen: str
    runtime_unit: str | None  # containerd.service, crio.service, or None when unknown
    db: str | None
    grace_period: float = 10.0
    extra_rw: tuple[str, ...] = field(default_factory=tuple)

    def writable(self) -> list[str]:
        """The folders the proxy writes: its socket's and its database's."""
        folders = [RUN_DIR]
        listen_dir = posixpath.dirname(str(unix_path(self.listen)))
        for folder in (listen_dir, posixpath.dirname(self.db) if self.db else None, *self.extra_rw):
            if folder and not any(folder == f or folder.startswith(f + "/") for f in folders):
                folders.append(folder)
        return folders


def _exec_start(unit: ProxyUnit) -> str:
    words = [systemd_word(w) for w in (*unit.program, "run")]
    lines, i = [" ".join(words)], 0
    args = list(unit.run_args)
    while i < len(args):  # one flag and its value per line, for a reader
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            lines.append(f"{systemd_word(args[i])} {systemd_word(args[i + 1])}")
            i += 2
        else:
            lines.append(systemd_word(args[i]))
            i += 1
    return "ExecStart=" + " \\\n    ".join(lines)


# The unit, with a comment above each choice; str.format() fills in the {fields}.
_UNIT = """# Written by `cri-proxy install`; `cri-proxy uninstall` removes it. Edit with care:
# uninstall refuses to remove a file that changed since install (unless --force).

[Unit]
Description=cri-proxy: transparent CRI proxy between the kubelet and the container runtime
# After= the runtime so its socket exists; Wants=, not Requires=/BindsTo=, so a runtime
# restart does not take the proxy (and the kubelet's socket) down with it: meanwhile the
# proxy answers UNAVAILABLE, exactly what the kubelet sees from a runtime that is down.
{order}# Before= the kubelet, so the kubelet finds the proxy's socket on its first dial.
Before=kubelet.service
# Never stop retrying: the default limit (5 starts in 10 s) would leave the kubelet without
# a runtime after a burst of crashes.
StartLimitIntervalSec=0

[Service]
# notify: the proxy tells systemd READY=1 once its socket listens, so the kubelet (ordered
# after it) never starts before there is something to dial.
Type=notify
{exec_start}
# always: a proxy that exited for any reason leaves the kubelet without a runtime. 1 s is
# shorter than the kubelet's own re-dial backoff (up to 3 s), so a crash costs one re-dial.
Restart=always
RestartSec=1
# SIGTERM lets open calls finish for --grace-period seconds; TimeoutStopSec is above that,
# or systemd would SIGKILL the proxy in the middle of it.
KillSignal=SIGTERM
TimeoutStopSec={stop}

# /run/cri-proxy holds the socket: 0755 so the kubelet can reach it, kept across restarts
# so a restart does not remove the folder under a dialing kubelet.
RuntimeDirectory=cri-proxy
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes
# The recording lives in /var/lib/cri-proxy, 0700: it holds every call the kubelet made.
{state}
# Hardening that a unix-socket relay does not notice.
# root, because the runtime's socket is root:root 0660; no capability but CAP_CHOWN (to hand
# the listen socket to a --socket-group).
User=root
CapabilityBoundingSet=CAP_CHOWN
AmbientCapabilities=
# RLIMIT_NICE 20: a thread may raise its priority back up to nice 0, where it started, and no
# further. The recorder lowers its recording thread's priority while it keeps up and takes it
# back when it falls behind; without CAP_SYS_NICE this limit is what lets it.
LimitNICE=20
# No way to gain more privileges (setuid programs, file capabilities) than it starts with.
NoNewPrivileges=yes
# Only unix sockets, reached through the file system: no network namespace needed either.
RestrictAddressFamilies=AF_UNIX
PrivateNetwork=yes
# strict: the whole file system is read-only but the socket and database folders. Connecting
# to the runtime's socket needs no write access, so /run/containerd stays read-only.
ProtectSystem=strict
ReadWritePaths={rw}
# Home folders are hidden (read-only instead when cri-proxy itself is installed under one).
ProtectHome={protect_home}
# A private /tmp: the proxy writes no temporary files, and sees no one else's.
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
# Not set: MemoryDenyWriteExecute=yes (CPython's ctypes/libffi may need such pages).

[Install]
# Not needed for the kubelet (its drop-in Wants= this unit); for `systemctl enable`.
WantedBy=multi-user.target
"""


def proxy_unit(unit: ProxyUnit) -> str:
    """The cri-proxy.service text."""
    runtime = unit.runtime_unit
    in_state_dir = bool(unit.db and unit.db.startswith(STATE_DIR + "/"))
    return _UNIT.format(
        order=f"After={runtime}\nWants={runtime}\n" if runtime else "",
        exec_start=_exec_start(unit),
        state="StateDirectory=cri-proxy\nStateDirectoryMode=0700\n" if in_state_dir else "",
        rw=" ".join(("" if f in (RUN_DIR, STATE_DIR) else "-") + f for f in unit.writable()),
        protect_home="read-only" if any(unit.program[0].startswith(h) for h in _HOME_DIRS) else "yes",
        stop=max(20, int(unit.grace_period) + 10),
    )


def kubelet_dropin(extra_args: str | None) -> str:
    """The kubelet drop-in: ordering after the proxy, and KUBELET_EXTRA_ARGS when the
    endpoints are set by flags (None: they are set elsewhere, the config or an env file)."""
    service = ""
    if extra_args is not None:
        service = ("\n[Service]\n# kubelet.service puts $KUBELET_EXTRA_ARGS last on its command line, so these win\n"
                   "# over earlier endpoint flags. Any value an earlier unit file set is kept in front.\n"
                   f"Environment={systemd_word('KUBELET_EXTRA_ARGS=' + extra_args, exec_line=False)}\n")
    return f"""# Written by `cri-proxy install`; `cri-proxy uninstall` removes it.
# The kubelet talks to the container runtime through cri-proxy.

[Unit]
# Wants=, not Requires=: stopping the proxy should not stop the kubelet, which then sees its
# runtime as down (UNAVAILABLE, retried) until the proxy is back.
Wants=cri-proxy.service
After=cri-proxy.service
{service}"""
