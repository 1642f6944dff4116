"""cri_proxy/node/changes.py: install then uninstall leaves the node's files exactly as they
were (the whole tree hashed: content, mode, owner), and uninstall never drops an edit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cri_proxy.model.errors import ConfigError
from cri_proxy.node.changes import apply, describe, revert
from cri_proxy.node.paths import DEFAULT_DB, DROPIN_DIR, MANIFEST_PATH, UNIT_PATH, NodeRoot
from cri_proxy.node.plan import InstallOptions, make_plan
from tests.helpers.node import CONFIG_NO_ENDPOINT, kubeadm_node, program, tree, write


def _install(node: NodeRoot) -> list[str]:
    return apply(node, make_plan(node, InstallOptions(program=program(), db=DEFAULT_DB)))


NODES = {
    "config-file": lambda root: kubeadm_node(root),
    "flags": lambda root: kubeadm_node(root, config=CONFIG_NO_ENDPOINT),
    "env-file": lambda root: kubeadm_node(root, default_env="KUBELET_EXTRA_ARGS=\n"),
    "bare": lambda root: NodeRoot(root),
}


@pytest.mark.parametrize("kind", NODES)
def test_install_then_uninstall_leaves_the_tree_as_it_was(kind: str, tmp_path: Path) -> None:
    node = NODES[kind](tmp_path)
    before = tree(tmp_path)
    steps = _install(node)
    assert tree(tmp_path) != before
    assert node.at(UNIT_PATH).is_file() and node.at(MANIFEST_PATH).is_file()
    assert any(s.startswith("created " + UNIT_PATH) for s in steps)
    revert(node)
    assert tree(tmp_path) == before


def test_a_changed_file_keeps_its_mode_and_its_backup_is_exact(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path)
    original = node.at("/var/lib/kubelet/config.yaml").read_bytes()
    _install(node)
    assert node.at("/var/lib/kubelet/config.yaml").stat().st_mode & 0o777 == 0o600
    manifest = json.loads(node.at(MANIFEST_PATH).read_text())
    entry = next(e for e in manifest["files"] if e["path"] == "/var/lib/kubelet/config.yaml")
    assert node.at(entry["backup"]).read_bytes() == original
    assert node.at(UNIT_PATH).stat().st_mode & 0o777 == 0o644


def test_uninstall_refuses_to_drop_an_edit_made_since_install(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path)
    before = tree(tmp_path)
    _install(node)
    with node.at(UNIT_PATH).open("a") as unit:
        unit.write("# an operator's edit\n")
    edited = tree(tmp_path)
    with pytest.raises(ConfigError, match=f"changed since install: {UNIT_PATH}"):
        revert(node)
    assert tree(tmp_path) == edited  # nothing was reverted
    revert(node, force=True)
    assert tree(tmp_path) == before


def test_install_twice_is_refused_and_uninstall_without_install_too(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path)
    with pytest.raises(ConfigError, match="not installed"):
        revert(node)
    plan = make_plan(node, InstallOptions(program=program(), via="flags"))
    _install(node)
    with pytest.raises(ConfigError, match="installed already"):
        apply(node, plan)
    node.at(MANIFEST_PATH).write_text("{broken")
    with pytest.raises(ConfigError, match="not valid JSON"):
        revert(node)


def test_the_recording_stays_when_uninstalling(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path)
    _install(node)
    node.at(DEFAULT_DB).write_bytes(b"calls")
    steps = revert(node)
    assert node.at(DEFAULT_DB).read_bytes() == b"calls"
    assert any(s.startswith("kept /var/lib/cri-proxy: not empty") for s in steps)
    assert not node.at(UNIT_PATH).exists()


def test_a_failure_half_way_undoes_what_was_written(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path, config=CONFIG_NO_ENDPOINT)
    os.remove(node.at(DROPIN_DIR + "/10-kubeadm.conf"))
    node.at(DROPIN_DIR).rmdir()
    write(tmp_path, DROPIN_DIR, "a file where the drop-in folder should be\n")  # the drop-in cannot be written
    before = tree(tmp_path)
    plan = make_plan(node, InstallOptions(program=program(), db=DEFAULT_DB))
    with pytest.raises(OSError):
        apply(node, plan)
    assert tree(tmp_path) == before


def test_describe_shows_new_files_whole_and_changes_as_diffs(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path)
    lines = describe(make_plan(node, InstallOptions(program=program())))
    assert f"----- begin {UNIT_PATH} (new: the proxy's service unit) -----" in lines
    assert "+containerRuntimeEndpoint: unix:///run/cri-proxy/containerd.sock   # kubeadm wrote this" in lines
    assert '-containerRuntimeEndpoint: "unix:///var/run/containerd/containerd.sock"   # kubeadm wrote this' in lines


def test_a_symlinked_file_is_refused_before_anything_changes(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path, config=CONFIG_NO_ENDPOINT)
    write(tmp_path, "/etc/kubelet.env", "KUBELET_EXTRA_ARGS=\n")
    node.at("/etc/default").mkdir(parents=True)
    os.symlink("../kubelet.env", node.at("/etc/default/kubelet"))
    before = tree(tmp_path)
    with pytest.raises(ConfigError, match="/etc/default/kubelet is a symlink"):
        _install(node)
    assert tree(tmp_path) == before
