"""cri_proxy/cli/node.py: `cri-proxy install`, `uninstall` and `doctor` as a user runs them,
on scratch roots, with the real proxy in front of the stand-in runtime for the wired node."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from cri_proxy.cli.node import program
from cri_proxy.node.paths import DEFAULT_DB, UNIT_PATH, NodeRoot
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers.calls import rows, wait_for
from tests.helpers.cli import cli_argv, one_error_line, run_cli
from tests.helpers.node import (CONFIG_NO_ENDPOINT, CONFIG_YAML, block, kubeadm_node, kubelet_process, systemd_analyze, tree,
                                verify_unit, write)
from tests.helpers.proxyproc import ProxyProcess, socket_answers

RESTART = "systemctl daemon-reload && systemctl restart cri-proxy kubelet"


def test_dry_run_changes_nothing_and_its_unit_passes_systemd(tmp_path: Path) -> None:
    root = tmp_path / "node"
    kubeadm_node(root)
    before = tree(root)
    result = run_cli("install", "--dry-run", "--root", str(root), "--proxy-arg=--retain=7d")
    assert result.returncode == 0, result.stderr
    assert tree(root) == before
    assert ("Pointing the kubelet at unix:///run/cri-proxy/containerd.sock by editing containerRuntimeEndpoint "
            "in its config file /var/lib/kubelet/config.yaml") in result.stdout
    assert result.stdout.rstrip().endswith(f"Then put it into effect: {RESTART}")
    unit = block(result.stdout, UNIT_PATH)
    assert f"ExecStart={program()[0]} run \\" in unit  # this installation's own cri-proxy, by absolute path
    assert "    --retain=7d\n" in unit and "Type=notify\n" in unit
    if systemd_analyze() is None:
        pytest.skip("needs systemd-analyze (apt-get install systemd) for the rest")
    verified = verify_unit(unit, tmp_path / "units")
    assert verified.returncode == 0 and str(tmp_path) not in verified.stderr, verified.stderr


def test_install_doctor_uninstall_round_trip(tmp_path: Path) -> None:
    kubeadm_node(tmp_path, config=CONFIG_NO_ENDPOINT, default_env="KUBELET_EXTRA_ARGS=\n")
    before = tree(tmp_path)
    installed = run_cli("install", "--root", str(tmp_path), "--no-db")
    assert installed.returncode == 0, installed.stderr
    assert "created /etc/systemd/system/cri-proxy.service" in installed.stdout
    assert "changed /etc/default/kubelet" in installed.stdout
    assert installed.stdout.rstrip().endswith(f"Now put it into effect: {RESTART}")
    doctor = run_cli("doctor", "--root", str(tmp_path))  # wired, but nothing runs: the sockets fail
    assert doctor.returncode == 1 and "FAIL  proxy socket:" in doctor.stdout
    assert "PASS  kubelet runtime endpoint:" in doctor.stdout
    assert "PASS  recording: off" in doctor.stdout
    again = run_cli("install", "--root", str(tmp_path))
    assert "already dials" in one_error_line(again)
    removed = run_cli("uninstall", "--root", str(tmp_path))
    assert removed.returncode == 0, removed.stderr
    assert "restored /etc/default/kubelet from its backup" in removed.stdout
    assert tree(tmp_path) == before
    assert "not installed" in one_error_line(run_cli("uninstall", "--root", str(tmp_path)))


def test_bad_options_are_one_line(tmp_path: Path) -> None:
    kubeadm_node(tmp_path)
    assert "must be one of auto, config, flags" in one_error_line(run_cli("install", "--root", str(tmp_path),
                                                                          "--via", "maybe", "--dry-run"))
    bad = run_cli("install", "--root", str(tmp_path), "--dry-run", "--proxy-arg=--retain-forever")
    assert "the proxy's flags do not parse" in one_error_line(bad)


def test_doctor_tells_a_wired_node_from_a_miswired_one(sock_dir: Path) -> None:
    """The real proxy in front of the stand-in runtime, at the paths install chose under the root."""
    node = NodeRoot(sock_dir)
    kubeadm_node(sock_dir)
    assert run_cli("install", "--root", str(sock_dir)).returncode == 0
    kubelet_process(sock_dir, 4321, ["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"])
    runtime = node.at("/var/run/containerd/containerd.sock")
    runtime.parent.mkdir(parents=True)
    node.at("/run/cri-proxy").mkdir(parents=True)
    fake = subprocess.Popen(cli_argv("fake-runtime", "--listen", f"unix://{runtime}"), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: socket_answers(runtime))
        with ProxyProcess(node.at("/run/cri-proxy/containerd.sock"), runtime, "--db", str(node.at(DEFAULT_DB)),
                          log=sock_dir / "proxy.log"):
            with grpc.insecure_channel(f"unix://{node.at('/run/cri-proxy/containerd.sock')}") as channel:
                v1_grpc.RuntimeServiceStub(channel).Version(v1.VersionRequest(), timeout=10)
            wait_for(lambda: rows(node.at(DEFAULT_DB), "SELECT count(*) FROM calls") == [(1,)])
            wired = run_cli("doctor", "--root", str(sock_dir))
            write(sock_dir, "/var/lib/kubelet/config.yaml", CONFIG_YAML)  # the kubelet dials containerd again
            miswired = run_cli("doctor", "--root", str(sock_dir))
    finally:
        fake.terminate()
        fake.wait(10)
    assert wired.returncode == 0, wired.stdout
    assert "FAIL" not in wired.stdout and "PASS  proxy socket: unix:///run/cri-proxy/containerd.sock answers" in \
        wired.stdout
    assert "PASS  recording: /var/lib/cri-proxy/calls.db" in wired.stdout and "PASS  last call:" in wired.stdout
    assert miswired.returncode == 1
    assert "FAIL  kubelet runtime endpoint: the kubelet dials unix:///var/run/containerd/containerd.sock" in \
        miswired.stdout
    assert miswired.stdout.rstrip().endswith("checks, 2 failed")


def test_program_is_this_installation() -> None:
    argv = program()
    assert argv[0].startswith(str(Path(sys.executable).parent))


def test_install_takes_the_config_file_and_its_unit_runs_with_it(tmp_path: Path) -> None:
    root = tmp_path / "node"
    kubeadm_node(root)
    write(root, "/etc/cri-proxy/config.toml", 'runtime-endpoint = "unix:///run/containerd/containerd.sock"\n'
          'listen = "unix:///run/cri-proxy/cri.sock"\nretain = "7d"\ngrace-period = 15\n')
    result = run_cli("install", "--dry-run", "--root", str(root), "--config", "/etc/cri-proxy/config.toml")
    assert result.returncode == 0, result.stderr
    unit = block(result.stdout, UNIT_PATH)
    assert "    --config /etc/cri-proxy/config.toml" in unit  # the node's path, not the scratch root's
    assert "    --listen unix:///run/cri-proxy/cri.sock \\" in unit and "    --grace-period 15 \\" in unit
    assert "Pointing the kubelet at unix:///run/cri-proxy/cri.sock" in result.stdout
    given = run_cli("install", "--dry-run", "--root", str(root), "--config", "/etc/cri-proxy/config.toml",
                    "--grace-period", "12")
    assert "    --grace-period 12 \\" in block(given.stdout, UNIT_PATH)  # install's own flag beats the file
    write(root, "/etc/cri-proxy/config.toml", "retian = '7d'\n")
    bad = run_cli("install", "--dry-run", "--root", str(root), "--config", "/etc/cri-proxy/config.toml")
    assert "unknown key 'retian'" in one_error_line(bad)
