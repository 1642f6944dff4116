"""cri_proxy/fakeruntime/state.py: pods and containers as containerd keeps them, with its errors."""

from __future__ import annotations

import grpc
import pytest

from cri_proxy.fakeruntime.state import FakeRuntimeError, RuntimeState
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from tests.helpers.fakeruntime import container_config, pod_config


def test_lifecycle_and_the_ids_prefixes_name() -> None:
    state = RuntimeState()
    pod = state.run_pod(pod_config())
    ctr = state.create_container(pod.id[:8], container_config())
    assert state.get_pod(pod.id[:8]) is pod and state.get_container(ctr.id[:8]) is ctr
    assert ctr.log_path == "/var/log/pods/default_web_uid-web/app/0.log"
    state.start_container(ctr.id)
    state.stop_container(ctr.id, exit_code=1)
    assert (ctr.state, ctr.exit_code, ctr.reason) == (v1.CONTAINER_EXITED, 1, "Error")
    state.remove_pod(pod.id)
    assert state.pods == {} and state.containers == {}
    state.remove_pod(pod.id)  # gone: not an error


def test_errors_carry_containerds_codes_and_wording() -> None:
    state = RuntimeState()
    with pytest.raises(FakeRuntimeError) as caught:
        state.get_pod("nope")
    assert (caught.value.code, caught.value.message) == (
        grpc.StatusCode.NOT_FOUND, 'an error occurred when try to find sandbox "nope": not found')
    pod = state.run_pod(pod_config())
    with pytest.raises(FakeRuntimeError) as caught:
        state.run_pod(pod_config())
    assert caught.value.code is grpc.StatusCode.ALREADY_EXISTS and "is reserved for" in caught.value.message
    with pytest.raises(FakeRuntimeError) as caught:
        state.create_container(pod.id, container_config(image="nginx:9"))
    assert caught.value.code is grpc.StatusCode.NOT_FOUND and "failed to resolve image" in caught.value.message
    ctr = state.create_container(pod.id, container_config())
    state.start_container(ctr.id)
    with pytest.raises(FakeRuntimeError) as caught:
        state.start_container(ctr.id)
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION and "CONTAINER_RUNNING" in caught.value.message
    state.stop_pod(pod.id)
    assert ctr.exit_code == 137
    with pytest.raises(FakeRuntimeError) as caught:
        state.create_container(pod.id, container_config("two"))
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION


def test_an_ambiguous_prefix_names_nothing() -> None:
    state = RuntimeState()
    for name in "abcdefghijklmnopqrstuvwxyz":  # 26 pods: some two share a first hex digit
        state.run_pod(pod_config(name))
    firsts = [pid[0] for pid in state.pods]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    assert state.resolve_pod_id(shared) is None
    assert state.resolve_pod_id("") is None


async def test_events_reach_subscribers() -> None:
    state = RuntimeState()
    queue = state.subscribe()
    assert state.event_listeners == 1
    pod = state.run_pod(pod_config())
    ctr = state.create_container(pod.id, container_config())
    state.start_container(ctr.id)
    kinds = [queue.get_nowait()[0] for _ in range(2)]
    assert kinds == [v1.CONTAINER_CREATED_EVENT, v1.CONTAINER_STARTED_EVENT]
    state.unsubscribe(queue)
    assert state.event_listeners == 0
