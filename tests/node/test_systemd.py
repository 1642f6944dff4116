"""cri_proxy/node/systemd.py: a service assembled from its unit, drop-ins and env files."""

from __future__ import annotations

from pathlib import Path

from cri_proxy.node.paths import NodeRoot
from cri_proxy.node.systemd import expand_command, load_service, parse_env_file, parse_unit
from tests.helpers.node import kubeadm_node, write


def test_parse_unit_handles_comments_continuations_and_repeats() -> None:
    text = "# top\n[Service]\nExecStart=/bin/a \\\n# inside\n  --flag 1\nEnvironment=A=1\nEnvironment=B=2\n[Unit]\n"
    sections = parse_unit(text)
    assert sections["Service"]["ExecStart"] == ["/bin/a --flag 1"]
    assert sections["Service"]["Environment"] == ["A=1", "B=2"]
    assert sections["Unit"] == {}


def test_env_file_quotes_comments_and_export() -> None:
    env = parse_env_file('# c\nA="x y"\nexport B=\'z\'\nC=\nnot a line\nD=1 # tail\n')
    assert env == {"A": "x y", "B": "z", "C": "", "D": "1"}


def test_dollar_var_splits_and_braced_var_stays_one_word() -> None:
    env = {"A": "--a=1 --b=2", "B": "two words"}
    assert expand_command("/bin/k $A ${B} x${B}y $MISSING", env) == ["/bin/k", "--a=1", "--b=2", "two words",
                                                                       "xtwo wordsy"]


def test_kubeadm_kubelet_command_line(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path, flags_env='KUBELET_KUBEADM_ARGS="--node-ip=10.0.0.2 --container-runtime-endpoint='
                                            'unix:///run/containerd/containerd.sock"\n',
                        default_env="KUBELET_EXTRA_ARGS=--v=2\n")
    service = load_service(node, "kubelet.service")
    assert service.files == ["/lib/systemd/system/kubelet.service",
                             "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"]
    assert service.argv(node) == [
        "/usr/bin/kubelet", "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
        "--kubeconfig=/etc/kubernetes/kubelet.conf", "--config=/var/lib/kubelet/config.yaml", "--node-ip=10.0.0.2",
        "--container-runtime-endpoint=unix:///run/containerd/containerd.sock", "--v=2"]


def test_environment_file_beats_environment_and_later_drop_ins_win(tmp_path: Path) -> None:
    node = kubeadm_node(tmp_path, default_env="KUBELET_EXTRA_ARGS=--from-file\n")
    write(tmp_path, "/etc/systemd/system/kubelet.service.d/20-extra.conf",
          '[Service]\nEnvironment="KUBELET_EXTRA_ARGS=--from-dropin"\n')
    service = load_service(node, "kubelet.service")
    assert service.environment["KUBELET_EXTRA_ARGS"] == "--from-dropin"
    assert service.argv(node)[-1] == "--from-file"
    assert load_service(node, "kubelet.service", skip=(service.files[-1],)).environment.get(
        "KUBELET_EXTRA_ARGS") is None


def test_empty_assignments_reset_and_etc_hides_the_same_drop_in_name(tmp_path: Path) -> None:
    write(tmp_path, "/lib/systemd/system/kubelet.service", "[Service]\nExecStart=/old\nEnvironment=A=1\n")
    write(tmp_path, "/lib/systemd/system/kubelet.service.d/50-x.conf", "[Service]\nExecStart=\nExecStart=/lib\n")
    write(tmp_path, "/etc/systemd/system/kubelet.service.d/50-x.conf",
          "[Service]\nEnvironment=\nExecStart=\nExecStart=/etc $A\n")
    node = NodeRoot(tmp_path)
    service = load_service(node, "kubelet.service")
    assert service.files == ["/lib/systemd/system/kubelet.service", "/etc/systemd/system/kubelet.service.d/50-x.conf"]
    assert service.environment == {}
    assert service.argv(node) == ["/etc"]


def test_a_unit_in_etc_hides_the_packaged_one(tmp_path: Path) -> None:
    write(tmp_path, "/lib/systemd/system/kubelet.service", "[Service]\nExecStart=/packaged\n")
    write(tmp_path, "/etc/systemd/system/kubelet.service", "[Service]\nExecStart=/mine\n")
    node = NodeRoot(tmp_path)
    assert load_service(node, "kubelet.service").argv(node) == ["/mine"]
    assert load_service(node, "missing.service").argv(node) == []
