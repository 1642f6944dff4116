"""The control socket (proxy/control.py): `cri-proxy faults list|add|remove|clear` against a real
`cri-proxy run --control` in front of the stand-in runtime, with real gRPC clients, and what
the metrics and the log say of it."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import stat
import subprocess
import time

import grpc
import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers import scrape
from tests.helpers.cli import run_cli
from tests.helpers.proxyproc import ProxyProcess, socket_answers, wait_for_log

pytestmark = pytest.mark.timeout(90)

CHANNEL = [("grpc.use_local_subchannel_pool", 1)]
DOWN = "{name: version-down, match: {method: Version}, action: {error: {code: UNAVAILABLE, message: down}}}"


async def _control(proxy: ProxyProcess, path: pathlib.Path) -> str:
    """The control endpoint, once it answers (it opens just after the listen socket)."""
    deadline = time.monotonic() + 15
    while not socket_answers(path):
        assert time.monotonic() < deadline and proxy.proc is not None and proxy.proc.poll() is None, proxy.log()
        await asyncio.sleep(0.02)
    return f"unix://{path}"


def faults(control: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("faults", *args, "--control", control, input=input)


def listed(control: str) -> list[tuple[str, int, int]]:
    result = faults(control, "list", "--format", "json")
    assert result.returncode == 0, result.stderr
    return [(rule["name"], rule["matched"], rule["injected"]) for rule in json.loads(result.stdout)]


async def _version(rt: v1_grpc.RuntimeServiceStub) -> str:
    try:
        return (await rt.Version(v1.VersionRequest())).runtime_api_version
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name}: {exc.details()}"


async def _goaway_seen(channel: grpc.aio.Channel) -> None:
    """Until the channel has left READY: its connection was told to go away (GOAWAY)."""
    async with asyncio.timeout(10):
        while channel.get_state() == grpc.ChannelConnectivity.READY:
            await channel.wait_for_state_change(grpc.ChannelConnectivity.READY)


async def _injected(metrics: str, rule: str, action: str, want: float) -> None:
    """Until the recorder process's /metrics counts `want` calls changed by `rule` (it is fed
    through the recorder link, after the call)."""
    key = ("cri_proxy_faults_injected_total", frozenset({("rule", rule), ("action", action)}))
    deadline = time.monotonic() + 20
    while (found := scrape.samples(scrape.get(metrics, "/metrics")[1]).get(key)) != want:
        assert time.monotonic() < deadline, f"{rule} {action}: {found} injected, not {want}"
        await asyncio.sleep(0.05)


async def test_add_remove_and_clear_apply_to_the_next_call_and_list_counts_hits(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="both")
    metrics = f"unix://{sock_dir}/m.sock"
    rules = sock_dir / "more.yaml"
    rules.write_text("rules:\n  - {name: images-stuck, match: {method: ListImages}, action: {hang: deadline}}\n"
                     "  - {name: version-close, match: {method: Version}, action: close}\n")
    try:
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path), "--control",
                                f"unix://{sock_dir}/c.sock", "--metrics-listen", metrics) as proxy:
            control = await _control(proxy, sock_dir / "c.sock")
            assert listed(control) == []  # --control without --faults: no rules until some are added
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
                rt, img = v1_grpc.RuntimeServiceStub(channel), v1_grpc.ImageServiceStub(channel)
                assert await _version(rt) == "v1"
                added = faults(control, "add", "--rule", DOWN)
                assert added.returncode == 0 and added.stdout == "added version-down; 1 rule(s) loaded\n", added
                # The next call comes on a new connection: the one no rule could take (relayed unread) was
                # sent GOAWAY as the rule came (after `faults add` answered: the client waits for it).
                await _goaway_seen(channel)
                assert await _version(rt) == "UNAVAILABLE: down"
                assert await _version(rt) == "UNAVAILABLE: down"
                assert list((await rt.ListContainers(v1.ListContainersRequest())).containers) == []
                assert listed(control) == [("version-down", 2, 2)]
                text = faults(control, "list")
                assert text.stdout.splitlines() == [
                    "1. version-down: method=Version -> error UNAVAILABLE: down (always): 2 matched, 2 injected",
                    "1 rule(s) loaded"]
                assert faults(control, "add", "--first", str(rules)).returncode == 0  # tried before version-down
                assert [name for name, _, _ in listed(control)] == ["images-stuck", "version-close", "version-down"]
                with pytest.raises(grpc.aio.AioRpcError) as hung:
                    await img.ListImages(v1.ListImagesRequest(), timeout=0.5)
                assert hung.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert faults(control, "remove", "version-close").stdout == "removed version-close; 2 rule(s) loaded\n"
                assert await _version(rt) == "UNAVAILABLE: down"  # counts kept: version-down was not changed
                assert listed(control) == [("images-stuck", 1, 1), ("version-down", 3, 3)]
                cleared = faults(control, "clear")
                assert cleared.stdout == "2 rule(s) removed; 0 rule(s) loaded\n"
                assert await _version(rt) == "v1"
                assert list((await img.ListImages(v1.ListImagesRequest(), timeout=5)).images)
            await _injected(metrics, "version-down", "error", 3)
            await _injected(metrics, "images-stuck", "hang", 1)
            missing = faults(control, "remove", "version-down")
            assert missing.returncode == 2
            assert missing.stderr == "cri-proxy: error: no rule named 'version-down' is loaded (loaded: none)\n"
            assert await proxy.astop() == 0, proxy.log()
    finally:
        await runtime.stop(0)
    log = proxy.log()
    assert "fault rules changed through the control socket by pid " in log and "added version-down" in log
    assert "fault rules cleared through the control socket" in log
    assert not (sock_dir / "c.sock").exists()  # removed at stop, as the listen socket is


async def test_a_bad_add_is_refused_whole_one_line_per_problem(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="both")
    loaded = sock_dir / "rules.yaml"
    loaded.write_text(f"rules:\n  - {DOWN}\n")
    bad = sock_dir / "bad.yaml"
    bad.write_text("rules:\n"
                   "  - {name: fine, match: {method: ListImages}, action: close}\n"
                   f"  - {DOWN}\n"
                   "  - {name: boom, match: {method: Version}, action: {explode: now}}\n"
                   "  - {name: body, match: {image: busybox}, action: {delay: 1s}}\n")
    try:
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path), "--faults", str(loaded),
                                "--control", f"unix://{sock_dir}/c.sock") as proxy:
            control = await _control(proxy, sock_dir / "c.sock")
            refused = faults(control, "add", str(bad))
            assert refused.returncode == 2 and refused.stdout == ""
            lines = refused.stderr.splitlines()
            assert len(lines) == 2, lines  # the rule errors first; the rest once those are fixed
            assert lines[0].startswith(f"cri-proxy: error: {bad}: rule 3 (boom): action: expected exactly one of")
            assert lines[1] == (f"cri-proxy: error: {bad}: rule 2 (version-down): a rule of that name is loaded "
                                "already (`cri-proxy faults remove version-down` first)")
            syntax = faults(control, "add", "--rule", "{name: x, action: [close}")
            assert syntax.returncode == 2 and syntax.stderr.startswith("cri-proxy: error: --rule: line 1: not YAML")
            assert listed(control) == [("version-down", 0, 0)]  # nothing changed
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
                img = v1_grpc.ImageServiceStub(channel)
                assert list((await img.ListImages(v1.ListImagesRequest(), timeout=5)).images)  # `fine` not added
            assert await proxy.astop() == 0, proxy.log()
    finally:
        await runtime.stop(0)


async def test_sighup_reloads_the_file_over_runtime_changes_and_a_live_socket_is_kept(
        sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="both")
    loaded = sock_dir / "rules.yaml"
    loaded.write_text(f"rules:\n  - {DOWN}\n")
    try:
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path), "--faults", str(loaded),
                                "--control", f"unix://{sock_dir}/c.sock", "--log-level", "info") as proxy:
            control = await _control(proxy, sock_dir / "c.sock")
            assert faults(control, "remove", "version-down").returncode == 0
            assert faults(control, "add", "--rule", "{name: extra, action: {delay: 1s}}").returncode == 0
            proxy.signal(signal.SIGHUP)
            await wait_for_log(proxy, "fault rules reloaded")
            assert listed(control) == [("version-down", 0, 0)]
            second = ProxyProcess(sock_dir / "p2.sock", pathlib.Path(runtime.path), "--control", control,
                                  log=sock_dir / "second.log")
            second.start(wait=False)
            assert second.proc is not None and await asyncio.to_thread(second.proc.wait, 30) == 2
            assert f"cri-proxy: error: control socket {sock_dir}/c.sock is live: another cri-proxy" in second.log()
            assert listed(control) == [("version-down", 0, 0)]  # the first one still serves it
            assert await proxy.astop() == 0, proxy.log()
    finally:
        await runtime.stop(0)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the other user's client runs as nobody")
async def test_the_socket_is_0600_and_another_user_is_told_permission_denied(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="both")
    sock_dir.chmod(0o755)  # the folder lets anyone through: only the socket's own mode keeps them out
    try:
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path), "--control",
                                f"unix://{sock_dir}/c.sock") as proxy:
            control = await _control(proxy, sock_dir / "c.sock")
            mode = (sock_dir / "c.sock").stat().st_mode
            assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
            os.seteuid(65534)  # nobody, for one connect (a child process could not run this venv's Python)
            try:
                other = faults(control, "list")
            finally:
                os.seteuid(0)
            assert other.returncode == 2, other.stderr
            assert other.stderr == (f"cri-proxy: error: control socket {control}: permission denied (it is mode "
                                    "0600: run this as the user cri-proxy runs as, or as root)\n")
            assert listed(control) == []  # the proxy's own user gets in
            assert await proxy.astop() == 0, proxy.log()
    finally:
        await runtime.stop(0)
