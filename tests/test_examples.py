"""The files in examples/ are well-formed and use only flags the real `cri-proxy run` has.

Each checker takes a file's text and fails with an AssertionError naming what is wrong; the
perturbation tests at the end feed it a broken copy of an example to show each check can fail.
"""

from __future__ import annotations

import pathlib
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from typing import Any

import pytest
import typer
import yaml

from cri_proxy.cli.app import LOG_LEVELS, app
from cri_proxy.model.endpoints import unix_path
from cri_proxy.model.errors import CriProxyError
from tests.conftest import ROOT

EXAMPLES = ROOT / "examples"
UNIT = EXAMPLES / "systemd" / "cri-proxy.service"
CRIO_UNIT = EXAMPLES / "systemd" / "cri-proxy-crio.service"
DROPIN = EXAMPLES / "systemd" / "kubelet.service.d" / "10-cri-proxy.conf"
DAEMONSET = EXAMPLES / "daemonset" / "cri-proxy.yaml"

# The kubelet flags the drop-in may set (the kubelet's own names; --image-endpoint is ours).
KUBELET_ENDPOINT_FLAGS = ("--container-runtime-endpoint", "--image-service-endpoint")
CRIO_SUFFIX = "run/crio/crio.sock"  # the kubelet's CrioSocketSuffix (pkg/kubelet/cadvisor)

Unit = dict[str, dict[str, list[str]]]


# --- readers ---------------------------------------------------------------------------

def read_unit(text: str) -> Unit:
    """systemd's unit syntax: [Section], Key=value (repeatable), `\\` continues, # ; comment."""
    unit: Unit = {}
    section: str | None = None
    pending = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith(("#", ";")):
            continue  # systemd skips comment lines, also inside a continued line
        line = pending + line
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.setdefault(section, {})
            continue
        assert section is not None, f"line {lineno}: {raw!r} comes before any [Section]"
        assert "=" in line, f"line {lineno}: {raw!r} is neither Key=value, a [Section] nor a comment"
        key, value = line.split("=", 1)
        unit[section].setdefault(key.strip(), []).append(value.strip())
    assert not pending, "the file ends inside a continued (\\) line"
    return unit


def values(unit: Unit, section: str, key: str) -> list[str]:
    """All space-separated words of every `key=` line; an empty assignment resets the list."""
    words: list[str] = []
    for value in unit.get(section, {}).get(key, []):
        words = words + value.split() if value else []
    return words


def single(unit: Unit, section: str, key: str) -> str:
    found = unit.get(section, {}).get(key, [])
    assert found, f"[{section}] has no {key}="
    return found[-1]


def timespan_seconds(value: str) -> float:
    """A systemd time span ("20", "20s", "1min 30s") in seconds."""
    units = {"": 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 0.001, "msec": 0.001,
             "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hour": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts and re.fullmatch(r"(\s*\d+(\.\d+)?\s*[a-z]*)+\s*", value), f"{value!r} is not a time span"
    total = 0.0
    for number, unit in parts:
        assert unit in units, f"{value!r}: unknown time unit {unit!r}"
        total += float(number) * units[unit]
    return total


def host_path(path: str) -> str:
    """/var/run is a symlink to /run on every systemd host."""
    path = posixpath.normpath(path)
    return "/run" + path[len("/var/run"):] if path == "/var/run" or path.startswith("/var/run/") else path


def is_under(path: str, folder: str) -> bool:
    path, folder = host_path(path), host_path(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


# --- the real CLI ------------------------------------------------------------------------

def run_command() -> Any:
    """The click command behind `cri-proxy run` (typer vendors click: only its duck type is public)."""
    return typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]


def check_run_argv(argv: list[str]) -> dict[str, Any]:
    """`argv` is a `cri-proxy run` command the real CLI accepts; return its parsed options."""
    assert all(isinstance(arg, str) for arg in argv), f"every word must be a string: {argv!r}"
    assert len(argv) >= 2 and posixpath.basename(argv[0]) == "cri-proxy" and argv[1] == "run", \
        f"not a `cri-proxy run` command: {argv[:2]!r}"
    command = run_command()
    known = {opt for param in command.params for opt in param.opts + list(getattr(param, "secondary_opts", []))}
    unknown = [arg.split("=", 1)[0] for arg in argv[2:] if arg.startswith("--") and arg.split("=", 1)[0] not in known]
    assert not unknown, f"not a `cri-proxy run` flag: {unknown} (the CLI has {sorted(known)})"
    try:
        params = command.make_context("run", list(argv[2:])).params
    except typer.TyperException as exc:  # click's usage errors (typer's vendored click derives them from this)
        why = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise AssertionError(f"`cri-proxy run` rejects {argv[2:]!r}: {why}") from None
    try:
        for flag in ("listen", "runtime_endpoint", "image_endpoint"):
            if params[flag] is not None:
                unix_path(params[flag], f"--{flag.replace('_', '-')}")
    except CriProxyError as exc:
        raise AssertionError(str(exc)) from None
    assert re.fullmatch(r"0?[0-7]{3}", params["socket_mode"]), f"--socket-mode {params['socket_mode']!r} is not octal"
    assert params["log_level"] in LOG_LEVELS, f"--log-level {params['log_level']!r} is not one of {LOG_LEVELS}"
    assert unix_path(params["listen"]) != unix_path(params["runtime_endpoint"]), \
        "--listen is the runtime's own socket"
    return params


def listen_path(params: dict[str, Any]) -> str:
    return str(unix_path(params["listen"]))


# --- checkers ----------------------------------------------------------------------------

def check_proxy_unit(text: str, runtime_unit: str) -> dict[str, Any]:
    """A cri-proxy service unit; return the parsed `cri-proxy run` options of its ExecStart."""
    unit = read_unit(text)
    assert runtime_unit in values(unit, "Unit", "After"), f"not After={runtime_unit}"
    assert "kubelet.service" in values(unit, "Unit", "Before"), "not Before=kubelet.service"
    pulls = [u for key in ("Wants", "Requires", "BindsTo") for u in values(unit, "Unit", key)]
    assert runtime_unit in pulls, f"none of Wants=/Requires=/BindsTo= names {runtime_unit}"
    assert unit.get("Service", {}).get("Type", ["simple"])[-1] == "notify", \
        "the proxy notifies systemd once it listens (READY=1): Type= must be notify"
    assert unit.get("Service", {}).get("NotifyAccess", ["main"])[-1] == "main", \
        "only the proxy's main process notifies: NotifyAccess= must be main"
    starts = unit.get("Service", {}).get("ExecStart", [])
    assert len(starts) == 1, f"expected one ExecStart=, found {len(starts)}"
    argv = shlex.split(starts[0].lstrip("-@:+!"))
    assert argv and argv[0].startswith("/"), f"ExecStart= should name the program by absolute path: {argv[:1]}"
    params = check_run_argv(argv)

    assert single(unit, "Service", "Restart") == "always", "Restart= is not always"
    assert single(unit, "Service", "KillSignal") == "SIGTERM", "KillSignal= is not SIGTERM"
    stop = timespan_seconds(single(unit, "Service", "TimeoutStopSec"))
    assert stop > params["grace_period"], \
        f"TimeoutStopSec={stop:g}s does not exceed --grace-period {params['grace_period']:g}s"

    families = values(unit, "Service", "RestrictAddressFamilies")
    assert families == ["AF_UNIX"], f"RestrictAddressFamilies={' '.join(families)}: the proxy needs AF_UNIX only"
    assert single(unit, "Service", "ProtectSystem") == "strict", "ProtectSystem= is not strict"
    folder = posixpath.dirname(listen_path(params))
    writable = [p.lstrip("-+") for p in values(unit, "Service", "ReadWritePaths")]
    assert any(is_under(folder, p) for p in writable), \
        f"under ProtectSystem=strict the listen socket's folder {folder} must be in ReadWritePaths= ({writable})"
    assert values(unit, "Install", "WantedBy"), "[Install] has no WantedBy="
    return params


def check_crio_unit(text: str) -> dict[str, Any]:
    """The CRI-O unit: its listen path keeps the suffix the kubelet recognises CRI-O by."""
    params = check_proxy_unit(text, "crio.service")
    assert listen_path(params).endswith("/" + CRIO_SUFFIX), \
        f"--listen {params['listen']} does not end in {CRIO_SUFFIX}: the kubelet would switch to CRI stats"
    return params


def check_kubelet_dropin(text: str, listen_endpoint: str) -> None:
    """The kubelet drop-in names the proxy's listen socket exactly and orders after the proxy."""
    unit = read_unit(text)
    for key in ("Wants", "After"):
        assert "cri-proxy.service" in values(unit, "Unit", key), f"[Unit] {key}= lacks cri-proxy.service"
    env: dict[str, str] = {}
    for line in unit.get("Service", {}).get("Environment", []):
        env.update(item.split("=", 1) for item in shlex.split(line))  # type: ignore[misc]
    assert "KUBELET_EXTRA_ARGS" in env, "no Environment=KUBELET_EXTRA_ARGS=..."
    words = shlex.split(env["KUBELET_EXTRA_ARGS"])
    flags: dict[str, str] = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            flags[name] = value if eq else (words[i + 1] if i + 1 < len(words) else "")
    unknown = [f for f in flags if f not in KUBELET_ENDPOINT_FLAGS]
    assert not unknown, f"unexpected kubelet flags {unknown}; expected {KUBELET_ENDPOINT_FLAGS}"
    for flag in KUBELET_ENDPOINT_FLAGS:
        assert flags.get(flag) == listen_endpoint, f"{flag}={flags.get(flag)!r}, not the proxy's {listen_endpoint!r}"
    for field in ("containerRuntimeEndpoint", "imageServiceEndpoint"):
        assert f"{field}: {listen_endpoint}" in text, f"the config-file comment lacks `{field}: {listen_endpoint}`"


def check_daemonset(text: str) -> dict[str, Any]:
    """The DaemonSet manifest; return the parsed `cri-proxy run` options of its container."""
    docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    assert len(docs) == 1, f"expected one YAML document, found {len(docs)}"
    ds = docs[0]
    assert (ds.get("apiVersion"), ds.get("kind")) == ("apps/v1", "DaemonSet"), \
        f"apiVersion/kind is {ds.get('apiVersion')}/{ds.get('kind')}, not apps/v1/DaemonSet"
    assert ds["metadata"].get("namespace") == "kube-system", "not in namespace kube-system"
    template = ds["spec"]["template"]
    selector = ds["spec"]["selector"]["matchLabels"]
    labels = template["metadata"]["labels"]
    assert selector.items() <= labels.items(), f"selector {selector} does not match the pod labels {labels}"
    pod = template["spec"]
    assert pod.get("priorityClassName") == "system-node-critical", "priorityClassName is not system-node-critical"
    assert {"operator": "Exists"} in pod.get("tolerations", []), "no `- operator: Exists` toleration (all taints)"

    containers = pod["containers"]
    assert len(containers) == 1, f"expected one container, found {len(containers)}"
    container = containers[0]
    params = check_run_argv(list(container.get("command", [])) + list(container.get("args", [])))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    assert grace > params["grace_period"], \
        f"terminationGracePeriodSeconds {grace} does not exceed --grace-period {params['grace_period']:g}"
    assert not container.get("securityContext", {}).get("privileged", False), \
        "the example says privileged is not needed"
    user = container.get("securityContext", {}).get("runAsUser", pod.get("securityContext", {}).get("runAsUser"))
    assert user == 0, f"runAsUser is {user!r}: the proxy runs as root on the host's sockets"

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = container.get("volumeMounts", [])
    for flag in ("listen", "runtime_endpoint", "image_endpoint"):
        if params[flag] is None:
            continue
        folder = posixpath.dirname(str(unix_path(params[flag])))
        covering = [m for m in mounts if is_under(folder, m["mountPath"])]
        assert covering, f"no volumeMount holds {folder} (--{flag.replace('_', '-')})"
        mount = max(covering, key=lambda m: len(m["mountPath"]))
        source = volumes.get(mount["name"], {}).get("hostPath")
        assert source, f"volume {mount['name']!r} for {folder} is not a hostPath"
        assert host_path(source["path"]) == host_path(mount["mountPath"]), \
            f"hostPath {source['path']} is mounted at {mount['mountPath']}: the socket paths would differ on the host"
        if flag == "listen":
            assert not mount.get("readOnly", False), f"the listen socket's folder {folder} is mounted read-only"
    return params


# --- the examples as they are -------------------------------------------------------------

def test_containerd_unit() -> None:
    params = check_proxy_unit(UNIT.read_text(), "containerd.service")
    assert unix_path(params["runtime_endpoint"]) == pathlib.Path("/run/containerd/containerd.sock")


def test_crio_unit_keeps_the_crio_socket_suffix() -> None:
    params = check_crio_unit(CRIO_UNIT.read_text())
    assert unix_path(params["runtime_endpoint"]) == pathlib.Path("/var/run/crio/crio.sock")


def test_kubelet_dropin_names_the_proxy_socket() -> None:
    params = check_proxy_unit(UNIT.read_text(), "containerd.service")
    check_kubelet_dropin(DROPIN.read_text(), params["listen"])


def test_daemonset() -> None:
    check_daemonset(DAEMONSET.read_text())


def test_readme_names_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    files = [p for p in EXAMPLES.rglob("*") if p.is_file() and p.name != "README.md"]
    missing = [str(p.relative_to(EXAMPLES)) for p in files if f"`{p.relative_to(EXAMPLES)}`" not in readme]
    assert not missing, f"examples/README.md does not describe {missing}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (systemd's tools)")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: pathlib.Path) -> None:
    """systemd itself knows every directive; ExecStart is pointed at an existing program."""
    for source in (UNIT, CRIO_UNIT):
        text = source.read_text().replace("/usr/local/bin/cri-proxy", sys.executable)
        (tmp_path / source.name).write_text(text)
    (tmp_path / "kubelet.service").write_text("[Service]\nExecStart=/bin/true $KUBELET_EXTRA_ARGS\n")
    (tmp_path / "kubelet.service.d").mkdir()
    shutil.copy(DROPIN, tmp_path / "kubelet.service.d" / DROPIN.name)
    units = [str(tmp_path / name) for name in (UNIT.name, CRIO_UNIT.name, "kubelet.service")]
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True,
                            timeout=60, env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/bin:/bin"})
    ours = [line for line in result.stderr.splitlines() if str(tmp_path) in line]
    assert result.returncode == 0 and not ours, f"systemd-analyze verify: {result.stderr}"


# --- each check can fail -------------------------------------------------------------------

PERTURBATIONS = [
    # (file, text in the example (must occur exactly once), replacement, expected message)
    (UNIT, "--grace-period 10 \\", "--grace-periods 10 \\", "not a `cri-proxy run` flag"),
    (UNIT, "--grace-period 10 \\", "--grace-period ten \\", "Invalid value for '--grace-period'"),
    (UNIT, "    --listen unix:///run/cri-proxy/containerd.sock \\\n", "", "Missing option '--listen'"),
    (UNIT, "--runtime-endpoint unix:///run/containerd/containerd.sock", "--runtime-endpoint tcp://127.0.0.1:1",
     "only unix://"),
    (UNIT, "--listen unix:///run/cri-proxy/containerd.sock", "--listen unix:///run/containerd/containerd.sock",
     "runtime's own socket"),
    (UNIT, "--socket-mode 0660", "--socket-mode rw-rw----", "not octal"),
    (UNIT, "--log-level info", "--log-level verbose", "--log-level"),
    (UNIT, "cri-proxy run \\", "cri-proxy fake-runtime \\", "not a `cri-proxy run` command"),
    (UNIT, "--wait-for-upstream 30 \\", "--wait-for-upstream 30", "neither Key=value"),
    (UNIT, "TimeoutStopSec=20", "TimeoutStopSec=10", "does not exceed --grace-period"),
    (UNIT, "TimeoutStopSec=20", "TimeoutStopSec=9s 500ms", "does not exceed --grace-period"),
    (UNIT, "Restart=always", "Restart=on-failure", "Restart="),
    (UNIT, "KillSignal=SIGTERM", "KillSignal=SIGKILL", "KillSignal="),
    (UNIT, "After=containerd.service", "After=network.target", "not After=containerd.service"),
    (UNIT, "Before=kubelet.service", "Before=", "not Before=kubelet.service"),
    (UNIT, "Wants=containerd.service", "Wants=", "Wants=/Requires=/BindsTo="),
    (UNIT, "Type=notify", "Type=simple", "Type="),
    (UNIT, "NotifyAccess=main", "NotifyAccess=all", "NotifyAccess="),
    (UNIT, "RestrictAddressFamilies=AF_UNIX", "RestrictAddressFamilies=AF_UNIX AF_INET", "AF_UNIX only"),
    (UNIT, "ProtectSystem=strict", "ProtectSystem=full", "ProtectSystem="),
    (UNIT, "ReadWritePaths=/run/cri-proxy", "ReadWritePaths=/run/cri-proxy-other", "ReadWritePaths="),
    (UNIT, "WantedBy=multi-user.target", "Alias=cri.service", "WantedBy="),
    (CRIO_UNIT, "--listen unix:///var/run/cri-proxy/run/crio/crio.sock",
     "--listen unix:///var/run/cri-proxy/crio.sock", "CRI stats"),
    (CRIO_UNIT, "After=crio.service", "After=containerd.service", "not After=crio.service"),
    (DROPIN, "--image-service-endpoint=unix:///run/cri-proxy/containerd.sock",
     "--image-service-endpoint=unix:///run/containerd/containerd.sock", "--image-service-endpoint="),
    (DROPIN, "--container-runtime-endpoint=", "--runtime-endpoint=", "unexpected kubelet flags"),
    (DROPIN, "--image-service-endpoint=", "--image-endpoint=", "unexpected kubelet flags"),
    (DROPIN, "Wants=cri-proxy.service", "Wants=containerd.service", "Wants= lacks"),
    (DROPIN, "After=cri-proxy.service", "After=", "After= lacks"),
    (DROPIN, "containerRuntimeEndpoint: unix:///run/cri-proxy/containerd.sock",
     "containerRuntimeEndpoint: unix:///run/cri-proxy/cri.sock", "config-file comment"),
    (DAEMONSET, "kind: DaemonSet", "kind: Deployment", "not apps/v1/DaemonSet"),
    (DAEMONSET, "namespace: kube-system", "namespace: default", "kube-system"),
    (DAEMONSET, "priorityClassName: system-node-critical", "priorityClassName: high", "system-node-critical"),
    (DAEMONSET, "- operator: Exists", "- operator: Exists\n          key: example.com/gpu", "all taints"),
    (DAEMONSET, "            - --grace-period\n", "            - --grace-periods\n", "not a `cri-proxy run` flag"),
    (DAEMONSET, '- "0660"', "- 0660", "must be a string"),
    (DAEMONSET, "            - unix:///run/containerd/containerd.sock",
     "            - unix:///var/lib/containerd/containerd.sock", "no volumeMount holds /var/lib/containerd"),
    (DAEMONSET, "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 10", "does not exceed"),
    (DAEMONSET, "privileged: false", "privileged: true", "privileged"),
    (DAEMONSET, "runAsUser: 0", "runAsUser: 1000", "runAsUser"),
    (DAEMONSET, "path: /run/cri-proxy\n", "path: /var/lib/cri-proxy\n", "the socket paths would differ"),
    (DAEMONSET, "mountPath: /run/cri-proxy\n", "mountPath: /run/cri-proxy\n              readOnly: true\n",
     "read-only"),
    (DAEMONSET, "      app.kubernetes.io/name: cri-proxy\n  updateStrategy",
     "      app.kubernetes.io/name: other\n  updateStrategy", "does not match the pod labels"),
]


def _check(path: pathlib.Path, text: str) -> None:
    if path == DAEMONSET:
        check_daemonset(text)
    elif path == DROPIN:
        check_kubelet_dropin(text, check_proxy_unit(UNIT.read_text(), "containerd.service")["listen"])
    elif path == CRIO_UNIT:
        check_crio_unit(text)
    else:
        check_proxy_unit(text, "containerd.service")


@pytest.mark.parametrize(("path", "old", "new", "message"), PERTURBATIONS,
                         ids=[f"{p.name}:{new.strip()[:40]}" for p, _, new, _ in PERTURBATIONS])
def test_a_broken_copy_fails(path: pathlib.Path, old: str, new: str, message: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name} no longer holds {old!r} exactly once: update this perturbation"
    _check(path, text)  # the example itself passes ...
    with pytest.raises(AssertionError, match=re.escape(message)):
        _check(path, text.replace(old, new))  # ... and the broken copy fails for the expected reason
