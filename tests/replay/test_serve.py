"""`cri-proxy serve`: a recording answers CRI calls as a stand-in runtime."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import signal
import sqlite3
import time

import grpc
import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.pb.runtime.v1alpha2 import api_pb2_grpc as v1alpha2_grpc
from cri_proxy.replay.serve import ServeOptions, start_serve
from tests.helpers.proxyproc import socket_answers
from tests.helpers.recordings import (
    MISSING_ID,
    PHASE_GAP_S,
    Recorded,
    cli_argv,
    recording,
    recording_master,
)

__all__ = ["recording", "recording_master"]  # fixtures used here
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


async def test_polling_more_often_than_recorded_follows_the_recordings_timeline(
        sock_dir: pathlib.Path, recording: Recorded) -> None:
    served = await start_serve(ServeOptions(str(recording.db), f"unix://{sock_dir}/s.sock", api="v1"))
    seen: list[tuple[float, int]] = []
    try:
        async with grpc.aio.insecure_channel(served.address) as channel:
            rt = v1_grpc.RuntimeServiceStub(channel)
            await rt.Version(v1.VersionRequest())  # the first call starts the clock
            start = time.monotonic()
            while (now := time.monotonic() - start) < 2 * PHASE_GAP_S + 0.4:
                reply = await rt.ListContainers(v1.ListContainersRequest())
                seen.append((now, len(reply.containers)))
                await asyncio.sleep(0.05)
    finally:
        await served.stop(0)
    before = [n for t, n in seen if t < PHASE_GAP_S - 0.1]
    during = [n for t, n in seen if PHASE_GAP_S + 0.15 < t < 2 * PHASE_GAP_S - 0.1]
    after = [n for t, n in seen if t > 2 * PHASE_GAP_S + 0.15]
    assert before and during and after
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
