"""The replay and serve commands' bad input: one line on stderr and exit status 2; help lists every option."""

from __future__ import annotations

import asyncio
import pathlib
import signal
import sqlite3

import pytest
import typer
from typer.testing import CliRunner

from cri_proxy.cli.replay import register
from cri_proxy.fakeruntime import start_fake_runtime
from tests.helpers.calls import T0, make_call, record
from tests.helpers.recordings import ROOT, Recorded, cli_argv, run_cli

pytestmark = pytest.mark.timeout(60)


def app() -> typer.Typer:
    main = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    register(main)
    return main


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cri-proxy: error: "), err
    return lines[0]


@pytest.mark.parametrize("args, says", [
    (["replay", "/nonexistent/x.db", "--target", "unix:///tmp/none.sock"], "no recording database"),
    (["replay", "{db}", "--target", "unix:///tmp/none.sock", "--session", "99"], "no session 99"),
    (["replay", "{db}", "--target", "unix://{dir}/none.sock"], "cannot reach the target"),
    (["replay", "{db}", "--target", "tcp://1.2.3.4:5"], "only unix:// sockets"),
    (["replay", "{db}", "--target", "unix:///tmp/none.sock", "--pace", "slow"], "--pace 'slow'"),
    (["replay", "{db}", "--target", "unix:///tmp/none.sock", "--report", "r.txt"], ".json or .html"),
    (["replay", "{db}", "--target", "unix:///tmp/none.sock", "--where", "nosuchcolumn = 1"], "--where"),
    (["replay", "{db}", "--target", "unix:///tmp/none.sock", "--where", "method = 'Nope'"], "no recorded calls"),
    (["serve", "/nonexistent/x.db", "--listen", "unix:///tmp/x.sock"], "no recording database"),
    (["serve", "{db}", "--listen", "unix://{dir}/s.sock", "--api", "v2"], "--api 'v2'"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], says: str, recording: Recorded,
                                          sock_dir: pathlib.Path) -> None:  # fmt: skip
    argv = [a.format(db=recording.db, dir=sock_dir) for a in args]
    result = CliRunner().invoke(app(), argv)
    assert result.exit_code == 2, result.output
    assert says in one_error_line(result.stderr)


async def test_exit_codes_through_the_command(sock_dir: pathlib.Path, recording: Recorded) -> None:
    code, _, err = await run_cli("replay", str(sock_dir / "missing.db"), "--target", f"unix://{sock_dir}/t.sock")
    assert code == 2 and "no recording database" in one_error_line(err)
    code, _, err = await run_cli("replay", str(recording.db), "--target", f"unix://{sock_dir}/t.sock")
    assert code == 2 and "cannot reach the target" in one_error_line(err)
    target = await start_fake_runtime(f"unix://{sock_dir}/t.sock")
    try:
        code, out, err = await run_cli("replay", str(recording.db), "--target", target.address, "--allow-mutations",
                                       "--report", str(sock_dir / "r.json"))
    finally:
        await target.stop(0)
    assert code == 0, out + err
    assert "23 matched, 0 differed, 0 failed, 0 skipped" in out and (sock_dir / "r.json").exists()
    assert "2 calls were sent as recorded, with their secrets redacted" in out


def test_help_lists_every_option() -> None:
    for command, options in {
        "replay": ["--target", "--session", "--since", "--until", "--where", "--allow-mutations", "--pace",
                   "--report", "--ignore", "--db-out", "--max-stream-seconds"],
        "serve": ["--listen", "--session", "--api", "--at"],
    }.items():
        text = CliRunner().invoke(app(), [command, "--help"]).output
        for option in options:
            assert option in text, (command, option)


async def test_ctrl_c_ends_a_replay_cleanly_with_the_summary_so_far(sock_dir: pathlib.Path) -> None:
    """A real SIGINT to a replay subprocess paced as recorded (calls a minute apart): it stops
    waiting, closes its session in --db-out, prints the summary of the call done, exits 130."""
    source, out_db = sock_dir / "calls.db", sock_dir / "out.db"
    record(source, [make_call("ListContainers", {}, {}, started=T0 + 60 * i, stream_id=2 * i + 1)
                    for i in range(3)])  # an empty node, as the stand-in runtime is
    target = await start_fake_runtime(f"unix://{sock_dir}/t.sock")
    proc = await asyncio.create_subprocess_exec(
        *cli_argv(), "replay", str(source), "--target", target.address, "--pace", "original", "--db-out", str(out_db),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)  # fmt: skip
    try:
        assert proc.stderr is not None and proc.stdout is not None
        lines = []
        while not lines or not lines[-1].startswith("replay: 1/3 calls"):  # the first call is done
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, lines  # the replay ended before its first progress line
            lines.append(line)
        assert lines[0] == "replay: 3 calls to go\n"
        proc.send_signal(signal.SIGINT)  # the replay now waits a minute for the second call
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await target.stop(0)
    assert proc.returncode == 130, err
    text = out.decode()
    assert "replayed 1 of 1 calls" in text and "1 matched, 0 differed" in text and "recorded as session 1" in text
    assert "interrupted (Ctrl-C) after 1 of 3 calls" in err.decode() and "Traceback" not in err.decode()
    conn = sqlite3.connect(f"file:{out_db}?mode=ro", uri=True)
    try:
        sessions = conn.execute("SELECT ended_at IS NOT NULL, calls_recorded FROM sessions").fetchall()
        calls = conn.execute("SELECT method, notes FROM calls").fetchall()
    finally:
        conn.close()
    assert sessions == [(1, 1)]  # the replay's session row is closed, with the one call
    assert [m for m, _ in calls] == ["ListContainers"] and "replay of call 1" in calls[0][1]
