"""The command line's conventions (issue 13.6): -h beside --help, --version, shell
completion, --no-trunc/--wide for table output, JSON columns nested as JSON in json/jsonl,
and the kubelet's flag names for the two endpoints on `run`."""

from __future__ import annotations

import csv
import io
import json
import signal
from pathlib import Path
from typing import Any

import pytest
import typer

from cri_proxy import __version__
from cri_proxy.cli.app import app
from cri_proxy.cli.query import json_value
from cri_proxy.query.output import ELLIPSIS
from tests.helpers.calls import record, rows
from tests.helpers.cli import Tail, incident_calls, run_cli

pytestmark = pytest.mark.timeout(60)

RUN: Any = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
METADATA = "SELECT id, request_metadata FROM calls WHERE method = 'RunPodSandbox' ORDER BY id"


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("conventions") / "calls.db"
    record(path, incident_calls())
    return path


@pytest.mark.parametrize("args", [[], ["query"], ["run"], ["replay"]])
def test_h_is_help(args: list[str]) -> None:
    short, long = run_cli(*args, "-h"), run_cli(*args, "--help")
    assert short.returncode == long.returncode == 0
    assert short.stdout == long.stdout and short.stdout.startswith("Usage: cri-proxy")


def test_version_flag_and_command() -> None:
    for args in (["--version"], ["version"]):
        result = run_cli(*args)
        assert (result.returncode, result.stdout) == (0, f"cri-proxy {__version__}\n")


def test_shell_completion_script_and_answers() -> None:
    script = run_cli("--show-completion", "bash")
    assert script.returncode == 0 and "_CRI_PROXY_COMPLETE=complete_bash" in script.stdout
    assert "--install-completion" in run_cli("-h").stdout

    def complete(words: str) -> list[str]:
        cword = len(words.split()) - (0 if words.endswith(" ") else 1)  # the word being completed
        env = {"_CRI_PROXY_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        result = run_cli(env={**env, "PATH": "/usr/bin:/bin"})
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("cri-proxy run --upstream-api ") == ["auto", "v1", "v1alpha2"]  # the enum's values
    assert complete("cri-proxy query --format j") == ["json", "jsonl"]
    assert "stats" in complete("cri-proxy st")


@pytest.mark.parametrize("flag", ["--no-trunc", "--wide"])
def test_no_trunc_prints_table_cells_whole(recording: Path, flag: str) -> None:
    full = dict(rows(recording, METADATA))
    cut = run_cli("query", "--db", str(recording), METADATA).stdout
    whole = run_cli("query", "--db", str(recording), flag, METADATA).stdout
    assert ELLIPSIS in cut and ELLIPSIS not in whole
    for metadata in full.values():
        assert metadata not in cut and metadata in whole
    stats = run_cli("stats", "--db", str(recording), flag)
    assert stats.returncode == 0 and "RunPodSandbox" in stats.stdout


def test_tail_no_trunc_shows_whole_ids(recording: Path) -> None:
    ((method, container),) = rows(recording, "SELECT method, container_id FROM calls "
                                              "WHERE container_id IS NOT NULL ORDER BY id DESC LIMIT 1")  # fmt: skip
    lines = []
    for extra in ([], ["--no-trunc"]):
        tail = Tail("--db", str(recording), "-n", "1", "--method", method, *extra)
        lines += tail.take(1)
        assert tail.stop(signal.SIGTERM) == 0
    assert f"ctr={container[:12]} " in lines[0] and container not in lines[0]
    assert f"ctr={container} " in lines[1]


def test_json_columns_are_nested_in_json_and_jsonl_only(recording: Path) -> None:
    full = dict(rows(recording, METADATA))
    as_json = json.loads(run_cli("query", "--db", str(recording), "--format", "json", METADATA).stdout)
    assert {r["id"]: r["request_metadata"] for r in as_json} == {k: json.loads(v) for k, v in full.items()}
    jsonl = run_cli("query", "--db", str(recording), "--format", "jsonl", METADATA).stdout.splitlines()
    assert [json.loads(line) for line in jsonl] == as_json
    as_csv = list(csv.reader(io.StringIO(run_cli("query", "--db", str(recording), "--format", "csv", METADATA).stdout)))
    assert {int(r[0]): r[1] for r in as_csv[1:]} == full  # CSV keeps the text
    decoded = json.loads(run_cli("query", "--db", str(recording), "--format", "json",
                                 "SELECT json FROM payloads WHERE json LIKE '{%' LIMIT 1").stdout)  # fmt: skip
    assert isinstance(decoded[0]["json"], dict)  # a decoded message is an object, not a string


@pytest.mark.parametrize("text, expected", [
    ('{"a": [1, 2]}', {"a": [1, 2]}),
    ("[1, null]", [1, None]),
    ("[not json", "[not json"),
    ('"a string"', '"a string"'),  # only objects and arrays: a JSON scalar stays the text it is
    ("42", "42"),
    (" [1]", " [1]"),
    (None, None),
    (3.5, 3.5),
])  # fmt: skip
def test_json_value(text: Any, expected: Any) -> None:
    assert json_value(text) == expected


def test_kubelet_flag_names_for_the_endpoints() -> None:
    kubelet = RUN.make_context("run", ["--listen", "unix:///tmp/l.sock",
                                       "--container-runtime-endpoint", "unix:///run/containerd/containerd.sock",
                                       "--image-service-endpoint", "unix:///run/images.sock"]).params  # fmt: skip
    ours = RUN.make_context("run", ["--listen", "unix:///tmp/l.sock",
                                    "--runtime-endpoint", "unix:///run/containerd/containerd.sock",
                                    "--image-endpoint", "unix:///run/images.sock"]).params  # fmt: skip
    assert kubelet == ours
    assert kubelet["runtime_endpoint"] == "unix:///run/containerd/containerd.sock"
    assert kubelet["image_endpoint"] == "unix:///run/images.sock"
    missing = run_cli("run", "--listen", "unix:///tmp/l.sock")
    assert missing.returncode == 2 and "Missing option '--runtime-endpoint'" in missing.stderr
