"""Fault rules in the relay (proxy/faultwire.py): real gRPC clients through `cri-proxy run
--faults` in front of the stand-in runtime, and what the recording says of each injected call."""

from __future__ import annotations

import asyncio
import itertools
import json
import pathlib
import signal

import grpc
import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.faults.book import FaultBook
from cri_proxy.faults.rules import parse_rules
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.proxy.server import RelayServer
from cri_proxy.proxy.translate import TranslationPolicy
from cri_proxy.store.readonly import open_readonly
from tests.conftest import ROOT
from tests.helpers import kubeletlike
from tests.helpers.kubeletlike import KubeletLike
from tests.helpers.proxyproc import ProxyProcess, wait_for_log

pytestmark = pytest.mark.timeout(90)

CHANNEL = [("grpc.use_local_subchannel_pool", 1)]
CLIENT = pathlib.Path("/proc/self/comm").read_text().strip()  # this process, as the proxy names its peer
BUSYBOX = "docker.io/library/busybox:latest"

RULES = f"""
rules:
  - name: pull-fails
    match: {{method: PullImage}}
    action: {{error: {{code: UNAVAILABLE, message: "injected: registry unreachable"}}}}
    first: 3
  - name: slow-status
    match: {{method: ImageStatus, client: "{CLIENT}", api: v1}}
    action: {{delay: 2s}}
  - name: stuck-list
    match: {{method: ListImages}}
    action: {{hang: deadline}}
  - name: fsinfo-every-other
    match: {{method: ImageFsInfo}}
    action: {{error: {{code: INTERNAL, message: "injected: every other"}}}}
    every: 2
  - name: slow-sandboxes
    match: {{method: ListPodSandbox}}
    action: {{hang: 1s}}
  - name: never-this-client
    match: {{method: Version, client: "no-such-process"}}
    action: {{close: true}}
"""


def _notes(db: pathlib.Path) -> list[tuple[str, str, int | None, list[str], float | None]]:
    conn = open_readonly(db)
    try:
        rows = conn.execute("SELECT path, outcome, status_code, notes, duration_ms FROM calls ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(path.rsplit("/", 1)[-1], outcome, code, json.loads(notes) if notes else [], duration)
            for path, outcome, code, notes, duration in rows]


async def _expect(call: object, code: grpc.StatusCode, text: str = "") -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call  # type: ignore[misc]
    assert failed.value.code() == code
    assert text in (failed.value.details() or "")


async def test_errors_delays_and_hangs_reach_exactly_the_matching_calls(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="both")
    rules, db = sock_dir / "rules.yaml", sock_dir / "c.db"
    rules.write_text(RULES)
    try:
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path), "--db", str(db),
                                "--faults", str(rules), "--log-level", "info") as proxy:
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
                rt, img = v1_grpc.RuntimeServiceStub(channel), v1_grpc.ImageServiceStub(channel)
                assert (await rt.Version(v1.VersionRequest())).runtime_api_version == "v1"
                # ImagePullBackOff-style: the kubelet pulls again and again; the first 3 fail
                pull = v1.PullImageRequest(image=v1.ImageSpec(image="docker.io/library/busybox:latest"))
                for _ in range(3):
                    await _expect(img.PullImage(pull), grpc.StatusCode.UNAVAILABLE, "injected: registry unreachable")
                assert (await img.PullImage(pull)).image_ref
                # a delay holds only its own stream: other calls on the connection go on meanwhile
                delayed = asyncio.ensure_future(img.ImageStatus(v1.ImageStatusRequest(image=pull.image)))
                assert (await rt.Version(v1.VersionRequest())).version
                assert not delayed.done()
                assert (await delayed).image.id
                await _expect(img.ListImages(v1.ListImagesRequest(), timeout=1.0), grpc.StatusCode.DEADLINE_EXCEEDED)
                fsinfo = []
                for _ in range(4):
                    try:
                        await img.ImageFsInfo(v1.ImageFsInfoRequest())
                        fsinfo.append("ok")
                    except grpc.aio.AioRpcError as exc:
                        fsinfo.append(exc.code().name)
                assert fsinfo == ["ok", "INTERNAL", "ok", "INTERNAL"]
                assert list((await rt.ListContainers(v1.ListContainersRequest())).containers) == []
                assert list((await rt.ListPodSandbox(v1.ListPodSandboxRequest())).items) == []  # after the hang
            assert await proxy.astop() == 0, proxy.log()
    finally:
        await runtime.stop(0)
    rows = _notes(db)
    faults = [(method, next(n for n in notes if n.startswith("fault: ")))
              for method, _, _, notes, _ in rows if any(n.startswith("fault: ") for n in notes)]
    assert faults == [("PullImage", "fault: pull-fails error UNAVAILABLE")] * 3 + [
        ("ImageStatus", "fault: slow-status delay 2.000s"), ("ListImages", "fault: stuck-list hang"),
        ("ImageFsInfo", "fault: fsinfo-every-other error INTERNAL"),
        ("ImageFsInfo", "fault: fsinfo-every-other error INTERNAL"),
        ("ListPodSandbox", "fault: slow-sandboxes hang 1.000s")]
    sandboxes = next(row for row in rows if row[0] == "ListPodSandbox")
    assert sandboxes[1:3] == ("completed", 0) and sandboxes[4] is not None and sandboxes[4] >= 1000
    status = next(row for row in rows if row[0] == "ImageStatus")
    assert status[1:3] == ("completed", 0) and status[4] is not None and status[4] >= 2000  # held for the whole delay
    hung = next(row for row in rows if row[0] == "ListImages")
    assert hung[1] != "completed" or hung[2] != 0
    untouched = [row for row in rows if not any(n.startswith("fault: ") for n in row[3])]
    assert {row[0] for row in untouched} == {"Version", "PullImage", "ImageFsInfo", "ListContainers"}
    assert all(row[1:3] == ("completed", 0) for row in untouched)


async def test_sighup_reloads_the_rules_and_a_bad_file_keeps_the_old_ones(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="both")
    rules = sock_dir / "rules.yaml"
    # A rule that could take this client's calls: its connection is read from the first call (with
    # none, it would be relayed unread, and a call made before the client reads the reload's GOAWAY
    # would go on unread: test_a_connection_no_rule_can_take_is_relayed_unread_until_the_rules_change)
    rules.write_text(f"rules:\n  - {{name: later, match: {{method: RemoveImage, client: {CLIENT}}}, action: close}}\n")
    try:
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path), "--faults", str(rules),
                                "--log-level", "info") as proxy:
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
                rt = v1_grpc.RuntimeServiceStub(channel)
                assert (await rt.Version(v1.VersionRequest())).version
                rules.write_text("rules:\n  - {name: version-down, match: {method: Version},"
                                 " action: {error: {code: UNAVAILABLE, message: reloaded}}}\n")
                proxy.signal(signal.SIGHUP)
                await wait_for_log(proxy, "fault rules reloaded")
                await _expect(rt.Version(v1.VersionRequest()), grpc.StatusCode.UNAVAILABLE, "reloaded")
                rules.write_text("rules:\n  - {name: bad, match: {method: Version}, action: {explode: now}}\n"
                                 "  - {name: body, match: {image: busybox}, action: {delay: 1s}}\n")
                proxy.signal(signal.SIGHUP)
                await wait_for_log(proxy, "keeping the 1 rule(s) loaded before")
                await _expect(rt.Version(v1.VersionRequest()), grpc.StatusCode.UNAVAILABLE, "reloaded")
            assert await proxy.astop() == 0, proxy.log()
    finally:
        await runtime.stop(0)
    problems = [line for line in proxy.log().splitlines() if "fault rules not reloaded:" in line]
    assert len(problems) == 2 and "rule 1 (bad)" in problems[0], proxy.log()


def test_a_bad_rules_file_stops_the_start_with_one_line_per_problem(sock_dir: pathlib.Path) -> None:
    rules = sock_dir / "rules.yaml"
    rules.write_text("rules:\n  - {name: a, match: {method: Version}, action: {explode: now}}\n"
                     "  - {name: b, match: {method: Version}, action: {delay: soon}}\n")
    proxy = ProxyProcess(sock_dir / "p.sock", sock_dir / "rt.sock", "--faults", str(rules))
    proxy.start(wait=False)
    assert proxy.proc is not None
    assert proxy.proc.wait(30) == 2, proxy.log()
    errors = [line for line in proxy.log().splitlines() if line.startswith("cri-proxy: error:")]
    assert len(errors) == 2 and "rule 1 (a)" in errors[0], proxy.log()
    assert not (sock_dir / "p.sock").exists()


async def test_a_close_rule_ends_the_clients_connection_and_is_recorded(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="both")
    rules, db = sock_dir / "rules.yaml", sock_dir / "c.db"
    rules.write_text("rules:\n  - {name: drop-conn, match: {method: ListImages}, action: {close: true}, first: 1}\n")
    try:
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path), "--db", str(db),
                                "--faults", str(rules)) as proxy:
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
                img = v1_grpc.ImageServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as closed:
                    await img.ListImages(v1.ListImagesRequest(), timeout=10)
                assert closed.value.code() == grpc.StatusCode.UNAVAILABLE
                assert list((await img.ListImages(v1.ListImagesRequest())).images)  # the next call, a new connection
            assert await proxy.astop() == 0, proxy.log()
            assert "fault rule 'drop-conn': closing the client's connection" in proxy.log()
    finally:
        await runtime.stop(0)
    notes = [n for row in _notes(db) for n in row[3] if n.startswith("fault: ")]
    assert notes == ["fault: drop-conn close"]


async def test_a_connection_no_rule_can_take_is_relayed_unread_until_the_rules_change(sock_dir: pathlib.Path) -> None:
    # Its client matches no rule: its headers are not read at all. Once a rule could take its
    # calls, it is sent GOAWAY; the client's next call comes on a new connection, read from the start.
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="v1")
    book = FaultBook(parse_rules([{"name": "others", "match": {"client": "no-such-process"},
                                   "action": {"delay": "1s"}}], "test"))
    policy = TranslationPolicy(lambda path: None, faults=book)
    relay = RelayServer(sock_dir / "p.sock", pathlib.Path(runtime.path), translation=policy)
    await relay.start()
    try:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
            rt = v1_grpc.RuntimeServiceStub(channel)
            assert (await rt.Version(v1.VersionRequest())).version
            (first,) = relay.connections
            assert policy.unread is not None and first in policy.unread.conns
            book.replace(parse_rules([{"name": "others", "match": {"client": "no-such-process"},
                                       "action": {"delay": "1s"}},
                                      {"name": "version-down", "match": {"method": "Version", "client": CLIENT},
                                       "action": {"error": {"code": "UNAVAILABLE", "message": "now read"}}}], "test"))
            async with asyncio.timeout(10):
                while first in relay.connections:  # GOAWAY, then closed once it has no call open
                    await asyncio.sleep(0.01)
            await _expect(rt.Version(v1.VersionRequest()), grpc.StatusCode.UNAVAILABLE, "now read")
            (second,) = relay.connections
            assert second not in policy.unread.conns
    finally:
        await relay.stop(0)
        await runtime.stop(0)


async def test_image_pull_back_off_sees_each_injected_error_until_the_rule_goes(sock_dir: pathlib.Path) -> None:
    # examples/faults/pull-image-error.yaml: a kubelet-like client retries with back-off, as it does
    # in ImagePullBackOff; each retry sees the injected error, the first after the rule goes works
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="v1")
    rules, db = sock_dir / "rules.yaml", sock_dir / "c.db"
    rules.write_text((ROOT / "examples" / "faults" / "pull-image-error.yaml").read_text())
    try:
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path), "--db", str(db),
                                "--faults", str(rules), "--log-level", "info") as proxy:
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
                kubelet = KubeletLike(channel)
                assert await kubelet.pull(BUSYBOX, attempts=4, backoff=0.1) == ["UNAVAILABLE"] * 4
                rules.write_text("rules: []\n")  # the registry is back
                proxy.signal(signal.SIGHUP)
                await wait_for_log(proxy, "fault rules reloaded")
                assert await kubelet.pull(BUSYBOX, attempts=4) == ["OK"]
            assert await proxy.astop() == 0, proxy.log()
    finally:
        await runtime.stop(0)
    with open_readonly(db) as conn:
        pulls = conn.execute("SELECT started_unix, status_message, notes FROM calls ORDER BY id").fetchall()
    assert [(message, json.loads(notes or "[]")) for _, message, notes in pulls] == [
        ("injected: registry unreachable", ["fault: pull-image-error error UNAVAILABLE"])] * 4 + [("", [])]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(pulls[:4])]
    # the recording shows the back-off (to the relay's clock, which stamps each chunk it reads: 10 ms to spare)
    assert all(gap >= 0.1 * 2 ** i - 0.01 for i, gap in enumerate(gaps)), gaps


async def test_a_delayed_relist_shows_in_the_recordings_timings(sock_dir: pathlib.Path) -> None:
    # examples/faults/pleg-latency.yaml: one relist call in ten from the kubelet is 1-3 s late;
    # the PLEG's next relist waits for it, and another client's relists are not touched
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="v1")
    db = sock_dir / "c.db"
    try:
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path), "--db", str(db), "--faults",
                                str(ROOT / "examples" / "faults" / "pleg-latency.yaml")) as proxy:
            with kubeletlike.named("kubelet"):
                async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
                    kubelet = KubeletLike(channel)
                    assert [await kubelet.relist() for _ in range(5)] == [("OK", "OK")] * 5
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
                assert [await KubeletLike(channel).relist() for _ in range(5)] == [("OK", "OK")] * 5
            assert await proxy.astop() == 0, proxy.log()
    finally:
        await runtime.stop(0)
    with open_readonly(db) as conn:
        rows = conn.execute("SELECT k.name, c.path, c.started_unix, c.duration_ms, c.notes FROM calls c "
                            "JOIN clients k ON k.id = c.client_id ORDER BY c.id").fetchall()
    assert [name for name, *_ in rows] == ["kubelet"] * 10 + [CLIENT] * 10
    late = [i for i, row in enumerate(rows) if row[4]]
    assert late == [9] and json.loads(rows[9][4])[0].startswith("fault: pleg-latency delay ")  # the 10th call
    delay = float(json.loads(rows[9][4])[0].rsplit(" ", 1)[1].rstrip("s"))
    assert 1.0 <= delay <= 3.0 and rows[9][1].endswith("/ListContainers")
    assert rows[9][3] >= delay * 1000  # its recorded duration holds the whole delay
    assert rows[10][2] - rows[9][2] >= delay  # the next relist (another connection's) came after it
