"""cri_proxy/node/plan.py: install changes the kubelet's endpoint where the node sets it, and
afterwards the kubelet (as its files are read again) dials the proxy."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_proxy.model.errors import ConfigError
from cri_proxy.node import kubelet as kl
from cri_proxy.node.paths import CRIO_SUFFIX, DEFAULT_KUBELET_CONFIG, DROPIN_PATH, UNIT_PATH, NodeRoot
from cri_proxy.node.plan import InstallOptions, Plan, make_plan, proxy_listen
from cri_proxy.node.systemd import parse_unit
from tests.helpers.node import CONFIG_NO_ENDPOINT, kubeadm_node, program, write

PROXY = "unix:///run/cri-proxy/containerd.sock"
OLD_KUBEADM_FLAGS = 'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock"\n'


def _plan(node: NodeRoot, **opts: object) -> Plan:
    return make_plan(node, InstallOptions(program=program(), **opts))  # type: ignore[arg-type]


def _apply(node: NodeRoot, plan: Plan) -> kl.KubeletView:
    """Write the plan's files as they are, then read the kubelet again."""
    for change in plan.changes:
        path = node.at(change.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(change.after)
    return kl.inspect(node, DEFAULT_KUBELET_CONFIG)


def _paths(plan: Plan) -> dict[str, bool]:
    return {c.path: c.before is None for c in plan.changes}


def test_a_config_file_endpoint_is_edited_in_the_config_file(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path)
    plan = _plan(node)
    assert plan.method.startswith("editing containerRuntimeEndpoint in its config file /var/lib/kubelet/config.yaml")
    assert _paths(plan) == {UNIT_PATH: True, "/var/lib/kubelet/config.yaml": False, DROPIN_PATH: True}
    assert plan.run_args[:4] == ["--listen", PROXY, "--runtime-endpoint", "unix:///var/run/containerd/containerd.sock"]
    dropin = next(c for c in plan.changes if c.path == DROPIN_PATH)
    assert "Service" not in parse_unit(dropin.after.decode())
    view = _apply(node, plan)
    assert view.endpoint() == (PROXY, "containerRuntimeEndpoint in /var/lib/kubelet/config.yaml")
    assert view.endpoint(image=True)[0] == PROXY


def test_a_flag_endpoint_is_overridden_by_the_drop_in(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path, flags_env=OLD_KUBEADM_FLAGS)
    plan = _plan(node)
    assert plan.method == f"setting its endpoint flags in KUBELET_EXTRA_ARGS with the drop-in {DROPIN_PATH}"
    assert _paths(plan) == {UNIT_PATH: True, DROPIN_PATH: True}
    view = _apply(node, plan)
    assert view.endpoint() == (PROXY, "the kubelet's --container-runtime-endpoint flag")
    assert view.endpoint(image=True) == (PROXY, "the kubelet's --image-service-endpoint flag")
    assert view.argv.count("--container-runtime-endpoint=unix:///run/containerd/containerd.sock") == 1


def test_an_env_file_that_sets_extra_args_is_edited_instead(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path, config=CONFIG_NO_ENDPOINT, default_env="# from the package\nKUBELET_EXTRA_ARGS=--v=2\n")
    plan = _plan(node)
    assert plan.method.startswith("adding its endpoint flags to KUBELET_EXTRA_ARGS in /etc/default/kubelet")
    env = next(c for c in plan.changes if c.path == "/etc/default/kubelet")
    assert env.after.decode() == ("# from the package\nKUBELET_EXTRA_ARGS=\"--v=2 --container-runtime-endpoint="
                                  f"{PROXY} --image-service-endpoint={PROXY}\"\n")
    view = _apply(node, plan)
    assert view.endpoint()[0] == PROXY and "--v=2" in view.argv


def test_extra_args_of_an_earlier_drop_in_are_kept(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path, config=CONFIG_NO_ENDPOINT)
    write(tmp_path, "/etc/systemd/system/kubelet.service.d/05-mine.conf",
          '[Service]\nEnvironment="KUBELET_EXTRA_ARGS=--node-labels=a=b"\n')
    view = _apply(node, _plan(node))
    assert "--node-labels=a=b" in view.argv and view.endpoint()[0] == PROXY


def test_crio_keeps_the_socket_suffix_the_kubelet_knows_it_by(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path, flags_env="KUBELET_KUBEADM_ARGS=--container-runtime-endpoint="
                                            "unix:///var/run/crio/crio.sock\n")
    plan = _plan(node)
    assert plan.listen == "unix:///run/cri-proxy/run/crio/crio.sock" and plan.listen.endswith(CRIO_SUFFIX)
    unit = parse_unit(plan.changes[0].after.decode())
    assert unit["Unit"]["After"] == ["crio.service"]
    assert _apply(node, plan).endpoint()[0].endswith("/" + CRIO_SUFFIX)
    assert proxy_listen("unix:///run/k3s/containerd/containerd.sock") == PROXY


def test_a_separate_image_socket_is_kept_behind_the_proxy(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path, flags_env="KUBELET_KUBEADM_ARGS=--image-service-endpoint=unix:///run/img.sock\n")
    plan = _plan(node)
    assert plan.run_args[4:6] == ["--image-endpoint", "unix:///run/img.sock"]
    view = _apply(node, plan)
    assert view.endpoint(image=True)[0] == PROXY


def test_explicit_choices_and_their_refusals(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path, flags_env=OLD_KUBEADM_FLAGS)
    with pytest.raises(ConfigError, match="flags win over the config file"):
        _plan(node, via="config")
    with pytest.raises(ConfigError, match="must be one of"):
        _plan(node, via="sometimes")
    other = kubeadm_node(tmp_path / "b")
    assert _plan(other, via="flags").method.startswith("setting its endpoint flags")
    plan = _plan(other, runtime_endpoint="unix:///run/x/rt.sock", listen="unix:///run/cri-proxy/p.sock", db=None)
    assert plan.run_args[:4] == ["--listen", "unix:///run/cri-proxy/p.sock", "--runtime-endpoint",
                                 "unix:///run/x/rt.sock"] and "--db" not in plan.run_args
    with pytest.raises(ConfigError, match="the runtime's own socket"):
        _plan(other, listen="unix:///var/run/containerd/containerd.sock")


def test_a_node_already_wired_or_installed_is_refused(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path)
    _apply(node, _plan(node))
    with pytest.raises(ConfigError, match="already dials unix:///run/cri-proxy/containerd.sock"):
        _plan(node)
    again = kubeadm_node(tmp_path / "b")
    write(tmp_path / "b", UNIT_PATH, "[Service]\n")
    with pytest.raises(ConfigError, match="exists already"):
        _plan(again)


def test_a_kubelet_unit_that_ignores_extra_args_gets_a_warning(tmp_path: Path) -> None:
    write(tmp_path, "/etc/systemd/system/kubelet.service", "[Service]\nExecStart=/usr/bin/kubelet --v=2\n")
    plan = _plan(NodeRoot(tmp_path))
    assert any("does not use $KUBELET_EXTRA_ARGS" in note for note in plan.notes)
    assert not any("WARNING" in n for n in _plan(kubeadm_node(tmp_path / "b")).notes)


def test_a_relative_database_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--db 'calls.db': give the node's absolute path"):
        _plan(kubeadm_node(tmp_path), db="calls.db")


def test_a_later_drop_in_that_sets_extra_args_gets_a_warning(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path, config=CONFIG_NO_ENDPOINT)
    write(tmp_path, "/etc/systemd/system/kubelet.service.d/20-extra.conf",
          '[Service]\nEnvironment="KUBELET_EXTRA_ARGS=--v=4"\n')
    plan = _plan(node)
    assert any(n.startswith("WARNING: /etc/systemd/system/kubelet.service.d/20-extra.conf sets KUBELET_EXTRA_ARGS")
               for n in plan.notes)
    # ... and rightly so: with the drop-in written, the later file still wins.
    assert _apply(node, plan).endpoint() == (kl.KUBELET_DEFAULT_ENDPOINT, "the kubelet's default")
