"""What `cri-proxy install` changes on a node, decided from what the node uses now.

The kubelet's endpoint is set in one of three places, and install changes it where it is set:
- a flag (or nothing at all: the kubelet's default): the drop-in sets KUBELET_EXTRA_ARGS,
  which kubelet.service puts last on its command line, so its flags win;
- a flag, and an EnvironmentFile= (Debian's /etc/default/kubelet) sets KUBELET_EXTRA_ARGS:
  that file's value would override the drop-in's, so install edits the file's line instead;
- the KubeletConfiguration file's containerRuntimeEndpoint, with no flag overriding it: install
  edits that field (and imageServiceEndpoint when set).
The plan is pure data: nothing here writes a file.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field

from cri_proxy.model.endpoints import unix_path
from cri_proxy.model.errors import ConfigError
from cri_proxy.node import kubelet as kl
from cri_proxy.node.paths import (CRIO_SUFFIX, DEFAULT_KUBELET_CONFIG, DROPIN_PATH, RUN_DIR, UNIT_PATH,
                                  NodeRoot)
from cri_proxy.node.systemd import load_service, parse_unit
from cri_proxy.node.units import ProxyUnit, kubelet_dropin, proxy_unit

VIA = ("auto", "config", "flags")
RESTART = "systemctl daemon-reload && systemctl restart cri-proxy kubelet"


@dataclass(frozen=True)
class InstallOptions:
    program: tuple[str, ...]
    runtime_endpoint: str | None = None  # None: the socket the kubelet dials now
    image_endpoint: str | None = None
    listen: str | None = None  # None: /run/cri-proxy/ + the runtime socket's name
    db: str | None = None  # None: no recording
    socket_mode: str = "0660"
    socket_group: str | None = None
    grace_period: float = 10.0
    wait_for_upstream: float = 30.0
    extra_args: tuple[str, ...] = ()
    via: str = "auto"
    kubelet_config: str = DEFAULT_KUBELET_CONFIG


@dataclass
class FileChange:
    path: str  # the node's path
    before: bytes | None  # None: the file does not exist yet
    after: bytes
    why: str


@dataclass
class Plan:
    changes: list[FileChange]
    method: str  # how the kubelet is pointed at the proxy: "editing ...", "adding ...", "setting ..."
    run_args: list[str]
    listen: str
    notes: list[str] = field(default_factory=list)
    restart: str = RESTART


def proxy_listen(runtime: str) -> str:
    """The proxy's socket for a runtime socket: the same file name under /run/cri-proxy, and for
    CRI-O the whole run/crio/crio.sock suffix, by which the kubelet recognises CRI-O."""
    path = str(unix_path(runtime, "runtime endpoint"))
    if path.endswith("/" + CRIO_SUFFIX):
        return f"unix://{RUN_DIR}/{CRIO_SUFFIX}"
    return f"unix://{RUN_DIR}/{posixpath.basename(path)}"


def is_proxy_socket(endpoint: str) -> bool:
    """The endpoint is a socket under /run/cri-proxy (or /var/run/cri-proxy, the same folder)."""
    path = posixpath.normpath(str(unix_path(endpoint)))
    path = "/run" + path[len("/var/run"):] if path.startswith("/var/run/") else path
    return path.startswith(RUN_DIR + "/")


def runtime_unit(runtime: str) -> str | None:
    name = posixpath.basename(str(unix_path(runtime)))
    return {"containerd.sock": "containerd.service", "crio.sock": "crio.service"}.get(name)


def _run_args(opts: InstallOptions, listen: str, runtime: str, image: str | None) -> list[str]:
    args = ["--listen", listen, "--runtime-endpoint", runtime]
    if image and unix_path(image) != unix_path(runtime):
        args += ["--image-endpoint", image]
    args += ["--socket-mode", opts.socket_mode]
    if opts.socket_group:
        args += ["--socket-group", opts.socket_group]
    args += ["--grace-period", f"{opts.grace_period:g}", "--wait-for-upstream", f"{opts.wait_for_upstream:g}"]
    if opts.db:
        args += ["--db", opts.db]
    return args + list(opts.extra_args)


def _choose(view: kl.KubeletView, via: str) -> str:
    """"config" or "flags": where the kubelet's endpoint is to be changed."""
    flag_set = bool(view.flags.get(kl.RUNTIME_FLAG) or view.flags.get(kl.IMAGE_FLAG))
    in_config = bool(view.config.get(kl.RUNTIME_FIELD))
    if via == "config":
        if flag_set:
            raise ConfigError("--via config: a kubelet flag sets the endpoint, and flags win over the config file")
        if view.config_path is None:
            raise ConfigError("--via config: the kubelet has no config file (no --config, no "
                              f"{DEFAULT_KUBELET_CONFIG})")
        return "config"
    if via == "flags":
        return "flags"
    return "config" if in_config and not flag_set else "flags"


def make_plan(node: NodeRoot, opts: InstallOptions) -> Plan:
    if opts.via not in VIA:
        raise ConfigError(f"--via {opts.via!r}: must be one of {', '.join(VIA)}")
    if opts.db is not None and not opts.db.startswith("/"):
        raise ConfigError(f"--db {opts.db!r}: give the node's absolute path, e.g. /var/lib/cri-proxy/calls.db")
    view = kl.inspect(node, opts.kubelet_config)
    current, where = view.endpoint()
    current_image, _ = view.endpoint(image=True)
    if is_proxy_socket(current):
        raise ConfigError(f"the kubelet already dials {current} ({where}), a cri-proxy socket")
    runtime = opts.runtime_endpoint or current
    image = opts.image_endpoint or (current_image if opts.runtime_endpoint is None else None)
    listen = opts.listen or proxy_listen(runtime)
    if unix_path(listen) in (unix_path(runtime), unix_path(image or runtime)):
        raise ConfigError(f"--listen {listen} is the runtime's own socket")
    run_args = _run_args(opts, listen, runtime, image)
    unit = ProxyUnit(program=opts.program, run_args=tuple(run_args), listen=listen, runtime_unit=runtime_unit(runtime),
                     db=opts.db, grace_period=opts.grace_period)
    changes = [FileChange(UNIT_PATH, _bytes(node, UNIT_PATH), proxy_unit(unit).encode(), "the proxy's service unit")]
    notes = [f"The kubelet dials {current} now ({where}); from {view.source}."]
    if _choose(view, opts.via) == "config":
        method, more = _via_config(node, view, listen)
    else:
        method, more = _via_flags(node, view, listen, notes)
    changes.extend(more)
    for change in changes:
        if change.path == UNIT_PATH and change.before is not None:
            raise ConfigError(f"{UNIT_PATH} exists already: run `cri-proxy uninstall` (or remove it) first")
    return Plan(changes=changes, method=method, run_args=run_args, listen=listen, notes=notes)


def _bytes(node: NodeRoot, path: str) -> bytes | None:
    try:
        return node.at(path).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _via_config(node: NodeRoot, view: kl.KubeletView, listen: str) -> tuple[str, list[FileChange]]:
    if view.config_path is None:  # _choose checked it
        raise ConfigError("the kubelet has no config file")
    before = _bytes(node, view.config_path) or b""
    fields = {kl.RUNTIME_FIELD: listen}
    if view.config.get(kl.IMAGE_FIELD):
        fields[kl.IMAGE_FIELD] = listen
    after = kl.edit_config(before.decode(), fields, add=True).encode()
    method = (f"editing {' and '.join(fields)} in its config file {view.config_path}, where the endpoint is set "
              "now (a backup is kept)")
    return method, [FileChange(view.config_path, before, after, "the kubelet's config file"),
                    FileChange(DROPIN_PATH, _bytes(node, DROPIN_PATH), kubelet_dropin(None).encode(),
                               "the kubelet's drop-in (order after the proxy)")]


def _via_flags(node: NodeRoot, view: kl.KubeletView, listen: str,
               notes: list[str]) -> tuple[str, list[FileChange]]:
    flags = f"{kl.RUNTIME_FLAG}={listen} {kl.IMAGE_FLAG}={listen}"
    service = load_service(node, "kubelet.service")
    if service.exec_start and not view.uses_extra_args:
        notes.append("WARNING: kubelet.service's ExecStart= does not use $KUBELET_EXTRA_ARGS: add the endpoint "
                     f"flags ({flags}) to it, or use --via config")
    env_file = _env_file_setting_extra_args(node, service.environment_files)
    if env_file is not None:
        before = _bytes(node, env_file) or b""
        after = _set_env_line(before.decode(), "KUBELET_EXTRA_ARGS", flags).encode()
        method = (f"adding its endpoint flags to KUBELET_EXTRA_ARGS in {env_file}, whose value would override a "
                  "drop-in's (a backup is kept)")
        return method, [FileChange(env_file, before, after, "the kubelet's environment file"),
                        FileChange(DROPIN_PATH, _bytes(node, DROPIN_PATH), kubelet_dropin(None).encode(),
                                   "the kubelet's drop-in (order after the proxy)")]
    for later in _later_dropins_setting_extra_args(node, service.files):
        notes.append(f"WARNING: {later} sets KUBELET_EXTRA_ARGS after {DROPIN_PATH} and overrides it: add "
                     f"{flags} there, or use --via config")
    earlier = service.environment.get("KUBELET_EXTRA_ARGS", "").strip()
    method = f"setting its endpoint flags in KUBELET_EXTRA_ARGS with the drop-in {DROPIN_PATH}"
    text = kubelet_dropin((earlier + " " + flags).strip())
    return method, [FileChange(DROPIN_PATH, _bytes(node, DROPIN_PATH), text.encode(), "the kubelet's drop-in")]


def _later_dropins_setting_extra_args(node: NodeRoot, files: list[str]) -> list[str]:
    """Drop-ins applied after ours (their names sort later) whose Environment= sets KUBELET_EXTRA_ARGS."""
    ours = posixpath.basename(DROPIN_PATH)
    later = [f for f in files if f.endswith(".conf") and posixpath.basename(f) > ours]
    return [f for f in later if any("KUBELET_EXTRA_ARGS=" in v for v in
                                    parse_unit(node.read_text(f) or "").get("Service", {}).get("Environment", []))]


def _env_file_setting_extra_args(node: NodeRoot, env_files: list[str]) -> str | None:
    """The last EnvironmentFile= that sets KUBELET_EXTRA_ARGS (its value is the one used)."""
    found = None
    for name in env_files:
        text = node.read_text(name.lstrip("-"))
        if text is not None and re.search(r"^\s*(export\s+)?KUBELET_EXTRA_ARGS=", text, re.M):
            found = name.lstrip("-")
    return found


def _set_env_line(text: str, key: str, extra: str) -> str:
    """`text` with the last `key=` line's value extended by `extra` (other lines untouched)."""
    lines = text.splitlines(keepends=True)
    pattern = re.compile(rf"^\s*(export\s+)?{key}=(?P<value>.*?)(?P<ending>\r?\n?)$")
    index = max(i for i, line in enumerate(lines) if pattern.match(line))
    match = pattern.match(lines[index])
    if match is None:  # found by the same pattern just above
        raise ConfigError(f"cannot edit the {key}= line")
    try:
        old = " ".join(shlex.split(match.group("value"), comments=True))
    except ValueError:
        old = match.group("value")
    value = (old + " " + extra).strip()
    lines[index] = f'{key}="{value}"{match.group("ending") or ""}'
    return "".join(lines)
