"""`cri-proxy serve`: a recording answers CRI calls as a stand-in runtime."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import shutil
import signal
import sqlite3
import time
from datetime import datetime, timezone

import grpc
import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.pb.runtime.v1alpha2 import api_pb2_grpc as v1alpha2_grpc
from cri_proxy.model.errors import ConfigError
from cri_proxy.replay.serve import ServeOptions, parse_at, start_serve
from tests.helpers.calls import T0, make_call, record
from tests.helpers.cli import run_cli
from tests.helpers.proxyproc import socket_answers
from tests.helpers.recordings import (
    GOLDEN_DIR,
    MISSING_ID,
    PHASE_GAP_S,
    Recorded,
    cli_argv,
)

pytestmark = pytest.mark.timeout(60)

Row = tuple[int, str, float, bytes, bytes | None, int, str | None]


def recorded_sequence(path: pathlib.Path) -> list[Row]:
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT c.id, c.path, c.started_unix - (SELECT min(started_unix) FROM calls), q.data, "
        "(SELECT p.data FROM messages m JOIN payloads p ON p.id = m.payload_id "
        " WHERE m.call_id = c.id AND m.direction = 'response'), c.status_code, c.status_message "
        "FROM calls c JOIN messages mq ON mq.call_id = c.id AND mq.direction = 'request' "
        "JOIN payloads q ON q.id = mq.payload_id ORDER BY c.started_unix").fetchall()
    conn.close()
    return rows


def identity(data: bytes) -> bytes:
    return data


async def test_a_client_running_the_recorded_sequence_gets_the_recorded_answers(
        sock_dir: pathlib.Path, recording: Recorded) -> None:
    served = await start_serve(ServeOptions(str(recording.db), f"unix://{sock_dir}/s.sock"))
    try:
        async with grpc.aio.insecure_channel(served.address) as channel:
            start: float | None = None  # from the first answer: serve's clock starts a little earlier
            for call_id, path, offset, request, response, code, message in recorded_sequence(recording.db):
                if start is not None:
                    await asyncio.sleep(max(0.0, offset - (time.monotonic() - start)))  # the recorded pace
                if path.endswith("/GetContainerEvents"):  # held open until the client's deadline, as recorded
                    stream = channel.unary_stream(path, request_serializer=identity, response_deserializer=identity)
                    with pytest.raises(grpc.aio.AioRpcError) as cut:
                        async for _ in stream(request, timeout=0.3):
                            pass
                    assert cut.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                    continue
                rpc = channel.unary_unary(path, request_serializer=identity, response_deserializer=identity)
                if code == 0:
                    assert await rpc(request, timeout=5) == (response or b""), (call_id, path)
                    start = time.monotonic() if start is None else start
                    continue
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await rpc(request, timeout=5)
                assert (raised.value.code().value[0], raised.value.details()) == (code, message), (call_id, path)
    finally:
        await served.stop(0)


def phase_starts(path: pathlib.Path) -> tuple[float, float]:
    """When the recording's pod phase began and ended: the offsets of its unfiltered
    ListContainers calls that first answered one container, then none again. The pauses
    between phases are PHASE_GAP_S, but the calls around them took longer on a loaded machine
    when the recording was made, which moves both boundaries later."""
    listed = [(offset, len(v1.ListContainersResponse.FromString(response or b"").containers))
              for _, path_, offset, request, response, code, _ in recorded_sequence(path)
              if path_ == "/runtime.v1.RuntimeService/ListContainers" and not request and code == 0]
    assert [n for _, n in listed] == [0, 1, 0], listed
    return listed[1][0], listed[2][0]


async def test_polling_more_often_than_recorded_follows_the_recordings_timeline(
        sock_dir: pathlib.Path, recording: Recorded) -> None:
    pod_s, gone_s = phase_starts(recording.db)
    assert pod_s > PHASE_GAP_S and gone_s - pod_s > PHASE_GAP_S  # the recording's pauses
    served = await start_serve(ServeOptions(str(recording.db), f"unix://{sock_dir}/s.sock", api="v1"))
    # Each answer is placed on serve's clock as an interval, never a point: serve starts its
    # clock when the first call arrives, somewhere between sending it and its answer, and
    # answers a poll somewhere between sending it and its answer; a loaded machine widens
    # both, and only answers wholly inside a phase are judged.
    seen: list[tuple[float, float, int]] = []
    try:
        async with grpc.aio.insecure_channel(served.address) as channel:
            rt = v1_grpc.RuntimeServiceStub(channel)
            await channel.channel_ready()  # connected first: the slack is then one call, not a connect too
            sent = time.monotonic()
            await rt.Version(v1.VersionRequest())  # the first call starts the clock
            start = time.monotonic()
            slack = start - sent
            while (now := time.monotonic() - start) < gone_s + 0.6:
                reply = await rt.ListContainers(v1.ListContainersRequest())
                seen.append((now, time.monotonic() - start + slack, len(reply.containers)))
                await asyncio.sleep(0.05)
    finally:
        await served.stop(0)
    before = [n for _, hi, n in seen if hi < pod_s - 0.1]
    during = [n for lo, hi, n in seen if pod_s + 0.15 < lo and hi < gone_s - 0.1]
    after = [n for lo, _, n in seen if lo > gone_s + 0.15]
    assert before and during and after, seen
    assert set(before) == {0} and set(during) == {1} and set(after) == {0}


async def test_unrecorded_methods_are_unimplemented_and_unknown_objects_not_found(
        sock_dir: pathlib.Path, recording: Recorded, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "cri_proxy.replay")
    served = await start_serve(ServeOptions(str(recording.db), f"unix://{sock_dir}/s.sock", api="v1"))
    try:
        async with grpc.aio.insecure_channel(served.address) as channel:
            rt, img = v1_grpc.RuntimeServiceStub(channel), v1_grpc.ImageServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await img.ImageFsInfo(v1.ImageFsInfoRequest(), timeout=5)
            assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await rt.ContainerStatus(v1.ContainerStatusRequest(container_id="f" * 64), timeout=5)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND and "f" * 64 in (raised.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as raised:  # the recorded error, verbatim
                await rt.ContainerStatus(v1.ContainerStatusRequest(container_id=MISSING_ID), timeout=5)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND and "cri-proxy" not in (raised.value.details() or "")
            # a request never recorded as such gets the closest recorded one's answer
            listed = await rt.ListContainers(v1.ListContainersRequest(filter=v1.ContainerFilter(
                label_selector={"app": "x"})), timeout=5)
            assert isinstance(listed, v1.ListContainersResponse)
            # --api v1: the other version is not served
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await v1alpha2_grpc.RuntimeServiceStub(channel).Version(v1alpha2.VersionRequest(), timeout=5)
            assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await served.stop(0)
    text = caplog.text
    assert "ImageFsInfo: never recorded, answering UNIMPLEMENTED" in text
    assert "answering NOT_FOUND" in text and "matched by closest" in text


async def test_both_versions_are_answered_from_one_recording(sock_dir: pathlib.Path, recording: Recorded) -> None:
    served = await start_serve(ServeOptions(str(recording.db), f"unix://{sock_dir}/s.sock"))
    try:
        async with grpc.aio.insecure_channel(served.address) as channel:
            old = v1alpha2_grpc.RuntimeServiceStub(channel)
            version = await old.Version(v1alpha2.VersionRequest(), timeout=5)
            assert version.runtime_api_version
            images = await v1alpha2_grpc.ImageServiceStub(channel).ListImages(v1alpha2.ListImagesRequest(), timeout=5)
            assert any("busybox" in tag for image in images.images for tag in image.repo_tags)
    finally:
        await served.stop(0)


async def test_the_serve_command_runs_until_sigterm(sock_dir: pathlib.Path, recording: Recorded) -> None:
    sock = sock_dir / "s.sock"
    proc = await asyncio.create_subprocess_exec(*cli_argv(), "serve", str(recording.db), "--listen", f"unix://{sock}",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not socket_answers(sock):
            assert proc.returncode is None and time.monotonic() < deadline
            await asyncio.sleep(0.05)
        async with grpc.aio.insecure_channel(f"unix://{sock}") as channel:
            reply = await v1_grpc.RuntimeServiceStub(channel).Version(v1.VersionRequest(), timeout=5)
            assert reply.runtime_name
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    assert "serving" in out.decode() and "Traceback" not in err.decode()
    assert not sock.exists()


def listed_at(path: pathlib.Path) -> list[tuple[str, int]]:
    """Each recorded ListContainers: when it started (RFC 3339) and how many containers it listed."""
    out = []
    for _, call_path, offset, _, response, _, _ in recorded_sequence(path):
        if call_path == "/runtime.v1.RuntimeService/ListContainers":
            out.append((offset, len(v1.ListContainersResponse.FromString(response or b"").containers)))
    conn = sqlite3.connect(path)
    first = conn.execute("SELECT min(started_unix) FROM calls").fetchone()[0]
    conn.close()
    stamp = [datetime.fromtimestamp(first + offset, timezone.utc).isoformat().replace("+00:00", "Z")
             for offset, _ in out]  # fmt: skip
    return [(at, n) for at, (_, n) in zip(stamp, out)]


@pytest.mark.parametrize("how", ["rfc3339", "relative"])
async def test_at_starts_the_timeline_where_asked(sock_dir: pathlib.Path, recording: Recorded, how: str) -> None:
    listed = listed_at(recording.db)
    assert [n for _, n in listed] == [0, 1, 0]  # before the pod, while it runs, after
    at = listed[1][0]
    if how == "relative":
        first = recorded_sequence(recording.db)[0][2]
        offset = [o for _, p, o, *_ in recorded_sequence(recording.db) if p.endswith("/ListContainers")][1]
        at = f"+{offset - first:.3f}s"
    served = await start_serve(ServeOptions(str(recording.db), f"unix://{sock_dir}/s.sock", api="v1", at=at))
    try:
        async with grpc.aio.insecure_channel(served.address) as channel:
            rt = v1_grpc.RuntimeServiceStub(channel)
            reply = await rt.ListContainers(v1.ListContainersRequest(), timeout=5)
            assert len(reply.containers) == 1  # the node as it was then, from the first call
            ctr = reply.containers[0].id
            status = await rt.ContainerStatus(v1.ContainerStatusRequest(container_id=ctr[:8]), timeout=5)
            assert status.status.id == ctr  # a short id, as a runtime takes it
    finally:
        await served.stop(0)


async def test_at_end_serves_the_node_as_last_recorded(sock_dir: pathlib.Path, recording: Recorded) -> None:
    served = await start_serve(ServeOptions(str(recording.db), f"unix://{sock_dir}/s.sock", api="v1", at="end"))
    try:
        async with grpc.aio.insecure_channel(served.address) as channel:
            rt = v1_grpc.RuntimeServiceStub(channel)
            assert len((await rt.ListContainers(v1.ListContainersRequest(), timeout=5)).containers) == 0
    finally:
        await served.stop(0)
    assert served.handler.start_s == pytest.approx(recorded_sequence(recording.db)[-1][2])


async def test_an_ambiguous_prefix_is_the_runtimes_error(sock_dir: pathlib.Path) -> None:
    db = sock_dir / "calls.db"
    ids = ("ab" + "1" * 62, "ac" + "2" * 62)
    record(db, [make_call("ContainerStatus", {"container_id": ctr}, {"status": {"id": ctr}}, started=T0 + i,
                          stream_id=2 * i + 1) for i, ctr in enumerate(ids)])  # fmt: skip
    served = await start_serve(ServeOptions(str(db), f"unix://{sock_dir}/s.sock"))
    try:
        async with grpc.aio.insecure_channel(served.address) as channel:
            rt = v1_grpc.RuntimeServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await rt.ContainerStatus(v1.ContainerStatusRequest(container_id="a"), timeout=5)
            assert raised.value.code() == grpc.StatusCode.UNKNOWN
            assert raised.value.details() == ('an error occurred when try to find container "a": '
                                              "Multiple IDs found with provided prefix: a")  # fmt: skip
            assert (await rt.ContainerStatus(v1.ContainerStatusRequest(container_id="ac"), timeout=5)).status.id == ids[1]
    finally:
        await served.stop(0)


def test_parse_at() -> None:
    first, last = T0, T0 + 600.0
    assert parse_at("start", first, last) == 0.0 and parse_at("END", first, last) == 600.0
    assert parse_at("+90s", first, last) == 90.0 and parse_at("-1m", first, last) == 540.0
    assert parse_at("+0.1h", first, last) == pytest.approx(360.0)
    assert parse_at("2027-01-15T08:05:00Z", first, last) == 300.0  # T0 is 08:00:00 UTC
    assert parse_at("2027-01-15 08:05:00", first, last) == 300.0  # UTC, as the recording's columns
    assert parse_at("2027-01-15T10:05:00+02:00", first, last) == 300.0
    for bad, says in (("yesterday", "give a time"), ("+5 parsecs", "give a duration"),
                      ("+11m", "outside the recording"), ("2027-01-15T07:59:00Z", "its calls run from 2027-01-15 08:00:00.000")):
        with pytest.raises(ConfigError, match=says):
            parse_at(bad, first, last)


def test_the_serve_command_refuses_an_at_outside_the_recording_in_one_line(recording: Recorded, sock_dir: pathlib.Path) -> None:
    result = run_cli("serve", str(recording.db), "--listen", f"unix://{sock_dir}/s.sock", "--at", "2001-01-01T00:00:00Z")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "outside the recording" in result.stderr


async def test_a_recording_made_before_the_bytes_markers_serves_the_same(sock_dir: pathlib.Path) -> None:
    """The newest golden file holds base64 JSON without `_bytes`: serve reads the raw bytes, so
    its ExecSync answers (and a container asked for by a short id) come back as recorded."""
    db = sock_dir / "v5.db"
    shutil.copy(GOLDEN_DIR / "schema-v5.db", db)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        request, response, ctr = conn.execute(
            "SELECT q.data, a.data, c.container_id FROM calls AS c "
            "JOIN messages AS mq ON mq.call_id = c.id AND mq.direction = 'request' JOIN payloads AS q ON q.id = mq.payload_id "
            "JOIN messages AS ma ON ma.call_id = c.id AND ma.direction = 'response' JOIN payloads AS a ON a.id = ma.payload_id "
            "WHERE c.method = 'ExecSync' AND c.exit_code = 0 ORDER BY c.id LIMIT 1").fetchone()
    finally:
        conn.close()
    served = await start_serve(ServeOptions(str(db), f"unix://{sock_dir}/s.sock", at="end"))
    try:
        async with grpc.aio.insecure_channel(served.address) as channel:
            rpc = channel.unary_unary("/runtime.v1.RuntimeService/ExecSync", request_serializer=identity,
                                      response_deserializer=identity)  # fmt: skip
            answer = await rpc(request, timeout=5)
            assert answer == response and v1.ExecSyncResponse.FromString(answer).stdout == b"ok\n"
            rt = v1_grpc.RuntimeServiceStub(channel)
            status = await rt.ContainerStatus(v1.ContainerStatusRequest(container_id=ctr[:12]), timeout=5)
            assert status.status.id == ctr
    finally:
        await served.stop(0)
