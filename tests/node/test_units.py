"""cri_proxy/node/units.py: the generated unit runs the given flags, is hardened yet can reach
its sockets, and systemd itself accepts it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_proxy.node.systemd import expand_command, parse_unit
from cri_proxy.node.units import ProxyUnit, kubelet_dropin, proxy_unit, systemd_word
from tests.helpers.node import program, systemd_analyze, verify_unit

ARGS = ("--listen", "unix:///run/cri-proxy/containerd.sock", "--runtime-endpoint",
        "unix:///run/containerd/containerd.sock", "--db", "/var/lib/cri-proxy/calls.db", "--emulate-events")


def _unit(**changes: object) -> ProxyUnit:
    fields: dict[str, object] = dict(program=program(), run_args=ARGS, listen=ARGS[1],
                                     runtime_unit="containerd.service", db="/var/lib/cri-proxy/calls.db")
    fields.update(changes)
    return ProxyUnit(**fields)  # type: ignore[arg-type]


def _service(unit: ProxyUnit) -> dict[str, list[str]]:
    return parse_unit(proxy_unit(unit))["Service"]


def test_exec_start_runs_exactly_the_program_and_flags() -> None:
    odd = ("--redact-label", "team lead's %h $HOME")
    service = _service(_unit(run_args=ARGS + odd))
    words = expand_command(service["ExecStart"][0], {})
    # systemd expands %% to % as a specifier; our reader leaves specifiers alone.
    assert [w.replace("%%", "%") for w in words] == [*program(), "run", *ARGS, *odd]


def test_the_unit_notifies_restarts_and_orders_before_the_kubelet() -> None:
    sections = parse_unit(proxy_unit(_unit()))
    assert sections["Service"]["Type"] == ["notify"]
    assert sections["Service"]["Restart"] == ["always"]
    assert sections["Unit"]["Before"] == ["kubelet.service"]
    assert sections["Unit"]["After"] == ["containerd.service"] == sections["Unit"]["Wants"]
    assert "After" not in parse_unit(proxy_unit(_unit(runtime_unit=None)))["Unit"]


def test_hardening_leaves_the_socket_and_database_folders_writable() -> None:
    service = _service(_unit(listen="unix:///run/other/p.sock", db="/srv/rec/calls.db"))
    assert service["ProtectSystem"] == ["strict"]
    assert service["ReadWritePaths"] == ["/run/cri-proxy -/run/other -/srv/rec"]
    assert "StateDirectory" not in service
    assert service["ProtectHome"] == ["yes"] and service["NoNewPrivileges"] == ["yes"]
    assert service["PrivateTmp"] == ["yes"]
    assert _service(_unit())["ReadWritePaths"] == ["/run/cri-proxy /var/lib/cri-proxy"]
    assert _service(_unit())["StateDirectory"] == ["cri-proxy"]


def test_a_program_under_home_keeps_home_readable() -> None:
    service = _service(_unit(program=("/home/ops/venv/bin/cri-proxy",)))
    assert service["ProtectHome"] == ["read-only"]


def test_every_choice_is_explained_in_a_comment() -> None:
    text = proxy_unit(_unit())
    for key in ("Type=notify", "Restart=always", "ProtectSystem=strict", "ProtectHome=", "PrivateTmp=yes",
                "NoNewPrivileges=yes", "Before=kubelet.service", "LimitNICE=20"):
        before = text.split(key, 1)[0].rstrip("\n").splitlines()
        assert before[-1].startswith("#") or before[-2].startswith("#"), f"{key} has no comment above it"


def test_systemd_word_quotes_only_what_needs_it() -> None:
    assert systemd_word("--listen=unix:///a.sock") == "--listen=unix:///a.sock"
    assert systemd_word('a "b"') == '"a \\"b\\""'
    assert systemd_word("50%") == "50%%"
    assert systemd_word("$X") == "$$X" and systemd_word("$X", exec_line=False) == "$X"


def test_the_drop_in_orders_the_kubelet_after_the_proxy() -> None:
    sections = parse_unit(kubelet_dropin("--v=2 --container-runtime-endpoint=unix:///p.sock"))
    assert sections["Unit"] == {"Wants": ["cri-proxy.service"], "After": ["cri-proxy.service"]}
    assert sections["Service"]["Environment"] == ['"KUBELET_EXTRA_ARGS=--v=2 --container-runtime-endpoint=unix:///p.sock"']
    assert "Service" not in parse_unit(kubelet_dropin(None))


@pytest.mark.skipif(systemd_analyze() is None, reason="needs systemd-analyze (apt-get install systemd)")
@pytest.mark.parametrize("unit", [_unit(), _unit(db=None, runtime_unit="crio.service"),
                                  _unit(listen="unix:///run/other/p.sock", db="/srv/rec/calls.db")],
                         ids=["containerd", "crio-no-db", "other-folders"])
def test_systemd_analyze_verify_accepts_the_unit(unit: ProxyUnit, tmp_path: Path) -> None:
    result = verify_unit(proxy_unit(unit), tmp_path, unit.runtime_unit or "containerd.service")
    ours = [line for line in result.stderr.splitlines() if str(tmp_path) in line]
    assert result.returncode == 0 and not ours, result.stderr
