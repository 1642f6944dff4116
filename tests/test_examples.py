"""The files in examples/ are well-formed and use only flags the real `cri-proxy run` has.

Each checker takes a file's text and fails with an AssertionError naming what is wrong; the
perturbation tests at the end feed it a broken copy of an example to show each check can fail.
"""

from __future__ import annotations

import asyncio
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
from tests.helpers.fakeruntime import runtime  # noqa: F401  (the fixture)
from tests.helpers.unitfiles import host_path, is_under, read_unit, single, timespan_seconds, values

EXAMPLES = ROOT / "examples"
UNIT = EXAMPLES / "systemd" / "cri-proxy.service"
CRIO_UNIT = EXAMPLES / "systemd" / "cri-proxy-crio.service"
DROPIN = EXAMPLES / "systemd" / "kubelet.service.d" / "10-cri-proxy.conf"
DAEMONSET = EXAMPLES / "daemonset" / "cri-proxy.yaml"
CONFIG = EXAMPLES / "config.toml"

# The kubelet flags the drop-in may set (the kubelet's own names; --image-endpoint is ours).
KUBELET_ENDPOINT_FLAGS = ("--container-runtime-endpoint", "--image-service-endpoint")
CRIO_SUFFIX = "run/crio/crio.sock"  # the kubelet's CrioSocketSuffix (pkg/kubelet/cadvisor)
HOST_UNIT_RUN_DIR = "/run/cri-proxy"  # where `cri-proxy install`'s unit listens

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

    assert not is_under(listen_path(params), HOST_UNIT_RUN_DIR), \
        f"--listen {params['listen']} is in {HOST_UNIT_RUN_DIR}, the host unit's folder: the two would collide"
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
    _check_daemonset_recording(params, mounts, volumes)
    _check_daemonset_metrics(params, container, template.get("metadata", {}).get("annotations", {}))
    return params


def _check_daemonset_metrics(params: dict[str, Any], container: dict[str, Any], annotations: dict[str, str]) -> None:
    """/metrics, /healthz and /readyz on a named container port of the pod's IP, scraped and probed there."""
    listen = params["metrics_listen"]
    assert listen is not None, "no --metrics-listen: the DaemonSet example serves metrics"
    host, _, port_text = listen.rpartition(":")
    assert host in ("0.0.0.0", "[::]", ""), \
        f"--metrics-listen {listen}: loopback or a fixed address is unreachable from Prometheus and the kubelet's probes"
    port = int(port_text)
    ports = {p.get("name"): p for p in container.get("ports", [])}
    assert "metrics" in ports and ports["metrics"]["containerPort"] == port, \
        f"no container port named metrics with containerPort {port} (--metrics-listen {listen})"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.get(probe, {}).get("httpGet", {})
        assert get.get("path") == path and get.get("port") in ("metrics", port), \
            f"{probe} is not an httpGet of {path} on the metrics port"
    assert annotations.get("prometheus.io/scrape") == "true" and annotations.get("prometheus.io/port") == str(port), \
        f"the pod's prometheus.io/scrape and prometheus.io/port annotations do not name port {port}"


def _check_daemonset_recording(params: dict[str, Any], mounts: list[dict[str, Any]],
                               volumes: dict[str, dict[str, Any]]) -> None:
    """The DaemonSet records to a hostPath folder that outlives the pod, bounded in size or age."""
    assert params["db"] is not None, "no --db: the DaemonSet example records its calls"
    folder = posixpath.dirname(str(params["db"]))
    covering = [m for m in mounts if is_under(folder, m["mountPath"])]
    assert covering, f"no volumeMount holds the recording's folder {folder}: it would die with the pod"
    mount = max(covering, key=lambda m: len(m["mountPath"]))
    source = volumes.get(mount["name"], {}).get("hostPath")
    assert source and host_path(source["path"]) == host_path(mount["mountPath"]), \
        f"the recording's folder {folder} is not the same hostPath on the host"
    assert not mount.get("readOnly", False), f"the recording's folder {folder} is mounted read-only"
    assert not is_under(folder, "/var/lib/cri-proxy"), \
        f"--db {params['db']} is in the host unit's /var/lib/cri-proxy: the two would write one file"
    assert params["retain"] or params["max_db_mb"], "neither --retain nor --max-db-mb: the host's disk fills up"


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


def test_the_daemonsets_probe_paths_are_what_the_metrics_server_answers() -> None:
    """The paths the manifest probes and scrapes, asked of the real metrics server."""
    from cri_proxy.recorder.metrics import CallMetrics
    from tests.helpers.scrape import get

    pod = yaml.safe_load(DAEMONSET.read_text())["spec"]["template"]
    container = pod["spec"]["containers"][0]
    paths = [container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")]
    server = CallMetrics(process=False).serve("127.0.0.1:0", poll_interval_s=0.01)  # close() at once
    try:
        answers = [get(server.address, path)[0] for path in [*paths, pod["metadata"]["annotations"]["prometheus.io/path"]]]
    finally:
        server.close()
    assert answers == [200, 200, 200]


def test_readme_names_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    files = [p for p in EXAMPLES.rglob("*") if p.is_file() and p.name != "README.md"]
    missing = [str(p.relative_to(EXAMPLES)) for p in files if f"`{p.relative_to(EXAMPLES)}`" not in readme]
    assert not missing, f"examples/README.md does not describe {missing}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (systemd's tools)")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: pathlib.Path) -> None:
    """systemd itself knows every directive; ExecStart is pointed at an existing program."""
    for source in (UNIT, CRIO_UNIT):
        text = source.read_text().replace("/opt/cri-proxy/bin/cri-proxy", sys.executable)
        (tmp_path / source.name).write_text(text)
    (tmp_path / "kubelet.service").write_text("[Service]\nExecStart=/bin/true $KUBELET_EXTRA_ARGS\n")
    (tmp_path / "kubelet.service.d").mkdir()
    shutil.copy(DROPIN, tmp_path / "kubelet.service.d" / DROPIN.name)
    units = [str(tmp_path / name) for name in (UNIT.name, CRIO_UNIT.name, "kubelet.service")]
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True,
                            timeout=60, env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/bin:/bin"})
    ours = [line for line in result.stderr.splitlines() if str(tmp_path) in line]
    assert result.returncode == 0 and not ours, f"systemd-analyze verify: {result.stderr}"


@pytest.mark.parametrize(("runtime", "runtime_unit"), [("unix:///run/containerd/containerd.sock", "containerd.service"),
                                                     ("unix:///var/run/crio/crio.sock", "crio.service")])
def test_the_unit_install_writes_passes_the_same_checks(runtime: str, runtime_unit: str,
                                                        tmp_path: pathlib.Path) -> None:
    """`cri-proxy install` generates its unit (cri_proxy/node/units.py): the examples' rules hold for it too."""
    from cri_proxy.node.paths import DEFAULT_DB, UNIT_PATH, NodeRoot
    from cri_proxy.node.plan import InstallOptions, make_plan

    plan = make_plan(NodeRoot(tmp_path), InstallOptions(program=("/opt/cri-proxy/bin/cri-proxy",),
                                                        runtime_endpoint=runtime, db=DEFAULT_DB))
    text = next(c.after.decode() for c in plan.changes if c.path == UNIT_PATH)
    params = check_crio_unit(text) if runtime_unit == "crio.service" else check_proxy_unit(text, runtime_unit)
    assert params["runtime_endpoint"] == runtime and params["db"] is not None
    assert read_unit(text)["Service"]["Type"] == ["notify"]


def test_config_file_sets_every_kind_of_flag_and_parses() -> None:
    from cri_proxy.cli.config import load

    values = load(CONFIG, run_command())
    assert values["runtime_endpoint"] == "unix:///run/containerd/containerd.sock" and values["retain"] == "7d"
    assert isinstance(values["exclude"], list) and values["require_recording"] is False
    assert values["metrics_listen"] == "127.0.0.1:9464"


async def test_the_proxy_runs_and_records_with_the_config_file(sock_dir: pathlib.Path, runtime: pathlib.Path) -> None:
    """The shipped file, with only the node paths moved into the test's folder by flags (which beat the file)."""
    import grpc

    from cri_proxy.pb.runtime.v1 import api_pb2 as v1
    from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
    from tests.helpers.calls import rows
    from tests.helpers.proxyproc import ProxyProcess
    from tests.helpers.scrape import get

    db, metrics = sock_dir / "calls.db", f"unix://{sock_dir}/m.sock"
    async with ProxyProcess(sock_dir / "p.sock", runtime, "--config", str(CONFIG), "--db", str(db),
                            "--metrics-listen", metrics, "--otlp-endpoint", f"http://unix:{sock_dir}/none") as proxy:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
            await v1_grpc.RuntimeServiceStub(channel).Version(v1.VersionRequest())
        status, _ = await asyncio.to_thread(get, metrics, "/healthz")
        assert status == 200
        assert await proxy.astop() == 0
    assert rows(db, "SELECT method FROM calls") == [("Version",)], proxy.log()
    (config,) = rows(db, "SELECT config FROM sessions")[0]
    assert '"7d"' in config and "ListContainerStats=0.1" in config  # the file's retain and sample took effect


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
    (DAEMONSET, "path: /run/cri-proxy-tools\n", "path: /var/lib/cri-proxy\n", "the socket paths would differ"),
    (DAEMONSET, "mountPath: /run/cri-proxy-tools\n",
     "mountPath: /run/cri-proxy-tools\n              readOnly: true\n", "read-only"),
    (DAEMONSET, "      app.kubernetes.io/name: cri-proxy-tools\n  updateStrategy",
     "      app.kubernetes.io/name: other\n  updateStrategy", "does not match the pod labels"),
    (DAEMONSET, "            - unix:///run/cri-proxy-tools/containerd.sock",
     "            - unix:///run/cri-proxy/containerd.sock", "the host unit's folder"),
    (DAEMONSET, "            - --db\n            - /var/lib/cri-proxy-tools/calls.db\n", "", "no --db"),
    (DAEMONSET, "            - /var/lib/cri-proxy-tools/calls.db", "            - /var/lib/other/calls.db",
     "no volumeMount holds the recording's folder"),
    (DAEMONSET, "path: /var/lib/cri-proxy-tools\n", "path: /var/lib/elsewhere\n", "not the same hostPath"),
    (DAEMONSET, "mountPath: /var/lib/cri-proxy-tools\n",
     "mountPath: /var/lib/cri-proxy-tools\n              readOnly: true\n", "mounted read-only"),
    (DAEMONSET, "            - --retain\n            - 7d\n            - --max-db-mb\n            - \"1024\"\n", "",
     "the host's disk fills up"),
    (DAEMONSET, "            - --metrics-listen\n            - 0.0.0.0:9464\n", "", "no --metrics-listen"),
    (DAEMONSET, "            - 0.0.0.0:9464\n", "            - 127.0.0.1:9464\n", "unreachable from Prometheus"),
    (DAEMONSET, "containerPort: 9464", "containerPort: 9465", "no container port named metrics"),
    (DAEMONSET, "path: /healthz", "path: /metrics", "livenessProbe is not an httpGet of /healthz"),
    (DAEMONSET, "path: /readyz", "path: /healthz", "readinessProbe is not an httpGet of /readyz"),
    (DAEMONSET, 'prometheus.io/port: "9464"', 'prometheus.io/port: "9090"', "prometheus.io/port annotations"),
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
