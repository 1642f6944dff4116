"""cri_proxy/node/paths.py: node paths map under a root and back."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_proxy.node.paths import NodeRoot


def test_node_paths_map_under_the_root_and_back(tmp_path: Path) -> None:
    node = NodeRoot(tmp_path)
    path = node.at("/etc/systemd/system/../system/cri-proxy.service")
    assert path == tmp_path / "etc/systemd/system/cri-proxy.service"
    assert node.node_path(path) == "/etc/systemd/system/cri-proxy.service"
    assert node.node_path(tmp_path) == "/"
    assert node.node_path(tmp_path / ".hidden") == "/.hidden"


def test_a_relative_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an absolute node path"):
        NodeRoot(tmp_path).at("etc/kubelet")


def test_read_text_is_none_for_what_is_not_a_readable_file(tmp_path: Path) -> None:
    node = NodeRoot(tmp_path)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "file").write_text("x")
    assert node.read_text("/etc/file") == "x"
    assert node.read_text("/etc/missing") is None
    assert node.read_text("/etc") is None
    assert node.read_text("/etc/file/below") is None
