"""cri_proxy/node/kubelet.py: the kubelet's flags, config file, and the endpoint it dials."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from cri_proxy.node import kubelet as kl
from cri_proxy.node.paths import DEFAULT_KUBELET_CONFIG, KUBELET_DEFAULT_ENDPOINT, NodeRoot
from tests.helpers.calls import wait_for
from tests.helpers.node import CONFIG_NO_ENDPOINT, CONFIG_YAML, kubeadm_node, kubelet_process, write


def test_flags_in_both_forms_and_the_last_wins() -> None:
    flags = kl.parse_flags(["--config", "/a.yaml", "--v=2", "--config=/b.yaml", "--flag-without-value", "--x", "1"])
    assert flags == {"--config": "/b.yaml", "--v": "2", "--flag-without-value": "", "--x": "1"}


def test_config_reads_top_level_fields_only_and_unquotes() -> None:
    fields = kl.read_config(CONFIG_YAML)
    assert fields[kl.RUNTIME_FIELD] == "unix:///var/run/containerd/containerd.sock"
    assert fields["cgroupDriver"] == "systemd"
    assert "enabled" not in fields and "authentication" not in fields
    assert kl.read_config(json.dumps({kl.RUNTIME_FIELD: "unix:///x.sock", "nested": {"a": "b"}})) == {
        kl.RUNTIME_FIELD: "unix:///x.sock"}
    assert kl.read_config("{not json") == {}


def test_edit_config_changes_only_that_value() -> None:
    after = kl.edit_config(CONFIG_YAML, {kl.RUNTIME_FIELD: "unix:///run/cri-proxy/containerd.sock"})
    before_lines, after_lines = CONFIG_YAML.splitlines(), after.splitlines()
    changed = [(b, a) for b, a in zip(before_lines, after_lines) if b != a]
    assert changed == [('containerRuntimeEndpoint: "unix:///var/run/containerd/containerd.sock"   # kubeadm wrote this',
                        "containerRuntimeEndpoint: unix:///run/cri-proxy/containerd.sock   # kubeadm wrote this")]
    assert len(before_lines) == len(after_lines)
    assert "  containerRuntimeEndpoint: not-top-level" in after


def test_edit_config_adds_a_missing_field_only_when_asked() -> None:
    values = {kl.IMAGE_FIELD: "unix:///p.sock"}
    assert kl.edit_config(CONFIG_NO_ENDPOINT, values) == CONFIG_NO_ENDPOINT
    assert kl.edit_config(CONFIG_NO_ENDPOINT.rstrip("\n"), values, add=True) == \
        CONFIG_NO_ENDPOINT + "imageServiceEndpoint: unix:///p.sock\n"
    edited = json.loads(kl.edit_config('{"kind": "KubeletConfiguration"}', values, add=True))
    assert edited == {"kind": "KubeletConfiguration", kl.IMAGE_FIELD: "unix:///p.sock"}


def test_a_flag_beats_the_config_file_which_beats_the_default(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path)
    view = kl.inspect(node, DEFAULT_KUBELET_CONFIG)
    assert view.config_path == "/var/lib/kubelet/config.yaml"
    assert view.endpoint() == ("unix:///var/run/containerd/containerd.sock",
                               "containerRuntimeEndpoint in /var/lib/kubelet/config.yaml")
    assert view.endpoint(image=True)[0] == "unix:///var/run/containerd/containerd.sock"
    assert not view.image_set()
    write(tmp_path, "/var/lib/kubelet/kubeadm-flags.env",
          "KUBELET_KUBEADM_ARGS=--container-runtime-endpoint=unix:///run/k3s/containerd/containerd.sock\n")
    assert kl.inspect(node, DEFAULT_KUBELET_CONFIG).endpoint() == (
        "unix:///run/k3s/containerd/containerd.sock", "the kubelet's --container-runtime-endpoint flag")
    empty = kubeadm_node(tmp_path / "other", config=CONFIG_NO_ENDPOINT)
    assert kl.inspect(empty, DEFAULT_KUBELET_CONFIG).endpoint() == (KUBELET_DEFAULT_ENDPOINT,
                                                                    "the kubelet's default")


def test_a_running_kubelet_is_what_counts(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path)
    write(tmp_path, "/etc/kubelet/other.yaml", "containerRuntimeEndpoint: unix:///run/crio/crio.sock\n")
    kubelet_process(tmp_path, 77, ["/usr/local/bin/kubelet", "--config", "/etc/kubelet/other.yaml"])
    kubelet_process(tmp_path, 5, ["/usr/bin/containerd"])
    view = kl.inspect(node, DEFAULT_KUBELET_CONFIG)
    assert view.source == "the running kubelet (pid 77)"
    assert view.config_path == "/etc/kubelet/other.yaml"
    assert view.endpoint()[0] == "unix:///run/crio/crio.sock"


def test_reads_a_real_process_from_the_real_proc() -> None:
    """A real process named kubelet (sh started with that argv[0]) is found in /proc."""
    proc = subprocess.Popen(["kubelet", "-c", "sleep 60; :", "--config=/nonexistent/kubelet.yaml",
                             "--container-runtime-endpoint=unix:///run/test-cri-proxy.sock"], executable="/bin/sh")
    try:
        # Until the child has exec'd, /proc shows the forked test process: wait for the exec.
        wait_for(lambda: proc.pid in dict(kl.running_kubelets(NodeRoot(Path("/")))), timeout=10)
        found = dict(kl.running_kubelets(NodeRoot(Path("/"))))
        flags = kl.parse_flags(found[proc.pid][1:])
        assert flags["--container-runtime-endpoint"] == "unix:///run/test-cri-proxy.sock"
        assert os.path.basename(found[proc.pid][0]) == "kubelet"
    finally:
        proc.kill()
        proc.wait()


def test_a_node_without_any_kubelet(tmp_path: Path) -> None:
    view = kl.inspect(NodeRoot(tmp_path), DEFAULT_KUBELET_CONFIG)
    assert view.source.startswith("nothing")
    assert view.config_path is None
    assert view.endpoint() == (KUBELET_DEFAULT_ENDPOINT, "the kubelet's default")
