"""cri_proxy/node/doctor.py: a wired node and each way of mis-wiring it give different results.

Real files under a scratch root, real listening unix sockets, real recordings."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cri_proxy.node.changes import apply
from cri_proxy.node.doctor import FAIL, PASS, WARN, Check, diagnose
from cri_proxy.node.paths import DEFAULT_DB, NodeRoot
from cri_proxy.node.plan import InstallOptions, make_plan
from tests.helpers.calls import make_call, record
from tests.helpers.node import CONFIG_YAML, dead_socket, kubeadm_node, kubelet_process, listening, write

PROXY_SOCK = "/run/cri-proxy/containerd.sock"
RUNTIME_SOCK = "/var/run/containerd/containerd.sock"


def _installed(root: Path) -> NodeRoot:
    node = kubeadm_node(root)
    apply(node, make_plan(node, InstallOptions(program=("/usr/bin/cri-proxy",), db=DEFAULT_DB)))
    kubelet_process(root, 901, ["/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"])
    return node


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def _failed(checks: list[Check]) -> list[str]:
    return [c.name for c in checks if c.status == FAIL]


def test_a_wired_node_passes(sock_dir: Path) -> None:
    node = _installed(sock_dir)
    record(node.at(DEFAULT_DB), [make_call("Version", started=time.time() - 5)])
    with listening(node.at(PROXY_SOCK)), listening(node.at(RUNTIME_SOCK)):
        node.at(PROXY_SOCK).chmod(0o660)
        checks = diagnose(node)
    assert _failed(checks) == []
    found = _by_name(checks)
    assert found["kubelet"].detail == "flags read from the running kubelet (pid 901)"
    assert found["kubelet runtime endpoint"].status == PASS
    assert found["proxy socket"].detail == f"unix://{PROXY_SOCK} answers"
    assert found["proxy socket access"].detail.startswith("mode 0660, group ")
    assert found["runtime socket"].status == PASS
    assert found["recording"].status == PASS and "quick_check ok" in found["recording"].detail
    assert found["last call"].status == PASS and found["last call"].detail.endswith(" s ago")


def test_a_kubelet_pointed_back_at_the_runtime_fails(sock_dir: Path) -> None:
    node = _installed(sock_dir)
    write(sock_dir, "/var/lib/kubelet/config.yaml", CONFIG_YAML)  # e.g. a kubeadm upgrade rewrote it
    with listening(node.at(PROXY_SOCK)), listening(node.at(RUNTIME_SOCK)):
        checks = diagnose(node)
    assert _failed(checks) == ["kubelet runtime endpoint", "kubelet image endpoint"]
    check = _by_name(checks)["kubelet runtime endpoint"]
    assert check.detail.startswith(f"the kubelet dials unix://{RUNTIME_SOCK}")
    assert check.fix and "restart the kubelet" in check.fix


def test_a_node_without_the_proxy_fails(sock_dir: Path) -> None:
    node = kubeadm_node(sock_dir)
    checks = diagnose(node)
    assert _failed(checks) == ["proxy unit"]
    assert _by_name(checks)["proxy unit"].fix == "run `cri-proxy install`"
    assert _by_name(checks)["kubelet"].status == WARN  # no running kubelet: its unit files were read


def test_dead_sockets_fail(sock_dir: Path) -> None:
    node = _installed(sock_dir)
    dead_socket(node.at(PROXY_SOCK))
    checks = _by_name(diagnose(node))
    assert checks["proxy socket"].status == FAIL and "connect() fails" in checks["proxy socket"].detail
    assert checks["runtime socket"].status == FAIL and "no such file" in checks["runtime socket"].detail
    assert checks["recording"].status == WARN  # the proxy never ran: no database yet


def test_a_socket_anyone_may_use_is_a_warning(sock_dir: Path) -> None:
    node = _installed(sock_dir)
    with listening(node.at(PROXY_SOCK)), listening(node.at(RUNTIME_SOCK)):
        node.at(PROXY_SOCK).chmod(0o666)
        check = _by_name(diagnose(node))["proxy socket access"]
    assert check.status == WARN and "root on the node" in check.detail


@pytest.mark.parametrize(("content", "status", "words"), [
    (b"SQLite format 3\0" + b"\x01" * 200, FAIL, "not a usable SQLite database"),
    (b"", FAIL, "not a cri-proxy recording"),
])
def test_a_broken_recording_fails(sock_dir: Path, content: bytes, status: str, words: str) -> None:
    node = _installed(sock_dir)
    node.at(DEFAULT_DB).write_bytes(content)
    check = _by_name(diagnose(node))["recording"]
    assert check.status == status and words in check.detail


def test_an_old_last_call_and_an_empty_recording_warn(sock_dir: Path) -> None:
    node = _installed(sock_dir)
    record(node.at(DEFAULT_DB), [make_call("Version", started=1_800_000_000.0)])
    check = _by_name(diagnose(node, now=1_800_000_000.0 + 7200))["last call"]
    assert (check.status, check.detail) == (WARN, "2.0 h ago")
    other = _installed(sock_dir / "b")
    record(other.at(DEFAULT_DB), [])
    assert _by_name(diagnose(other))["last call"].status == WARN
