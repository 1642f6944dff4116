"""Shared by the `cri-proxy health` tests: running it for its JSON, a kubelet's relists, and
checking that each finding's evidence runs."""

from __future__ import annotations

import json
import pathlib
import shlex
from typing import Any

from cri_proxy.model.call import RecordedCall
from tests.helpers.calls import make_call
from tests.helpers.cli import run_cli


def health(db: pathlib.Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli("health", "--db", str(db), "--format", "json", *args)
    assert result.returncode in (0, 1), result.stderr
    got: dict[str, Any] = json.loads(result.stdout)
    assert got["unhealthy"] == (result.returncode == 1)
    return result.returncode, got


def relists(start: float, seconds: int, skip: range = range(0)) -> list[RecordedCall]:
    """The kubelet's PLEG: ListPodSandbox then ListContainers every second (not in `skip`)."""
    calls = []
    for s in range(seconds):
        if s in skip:
            continue
        calls += [make_call("ListPodSandbox", {}, {}, started=start + s, duration_ms=2.0, stream_id=4 * s + 1),
                  make_call("ListContainers", {}, {}, started=start + s + 0.003, duration_ms=3.0,
                            stream_id=4 * s + 3)]  # fmt: skip
    return calls


def assert_evidence_runs(db: pathlib.Path, findings: list[dict[str, Any]]) -> None:
    for finding in findings:
        argv = shlex.split(finding["evidence"])
        assert argv[:2] == ["cri-proxy", "query"], finding
        result = run_cli(*argv[1:], "--db", str(db))
        assert result.returncode == 0, (finding, result.stderr)
