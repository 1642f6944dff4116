"""The fake runtime's in-memory state: pods, containers and their lifecycle rules.

The rules and error messages follow containerd's CRI plugin: names are reserved per
name/namespace/uid/attempt, a container starts only from CREATED, removing an unknown id
succeeds, and unknown ids on status/start/stop are NOT_FOUND. Errors are raised as
`FakeRuntimeError`; the server turns them into gRPC statuses in one place.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time

import grpc

from cri_proxy.fakeruntime.images import DEFAULT_IMAGES, ImageStore, PreloadedImage
from cri_proxy.pb.runtime.v1 import api_pb2 as v1

log = logging.getLogger(__name__)


class FakeRuntimeError(Exception):
    """A CRI call failed with this gRPC status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def new_id() -> str:
    """A 64-hex-digit id, like containerd's."""
    return secrets.token_hex(32)


@dataclasses.dataclass
class Pod:
    id: str
    config: v1.PodSandboxConfig
    runtime_handler: str
    created_at: int
    ip: str
    state: int = v1.SANDBOX_READY


@dataclasses.dataclass
class Container:
    id: str
    pod_id: str
    config: v1.ContainerConfig
    image_id: str
    image_ref: str
    created_at: int
    log_path: str
    state: int = v1.CONTAINER_CREATED
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    resources: v1.LinuxContainerResources = dataclasses.field(
        default_factory=v1.LinuxContainerResources
    )


# What a GetContainerEvents stream receives: (ContainerEventType, container snapshot, pod).
Event = tuple[int, Container, Pod]


class RuntimeState:
    """All pods, containers and images of one fake runtime."""

    def __init__(self, preload: tuple[PreloadedImage, ...] = DEFAULT_IMAGES) -> None:
        self.images = ImageStore(preload)
        self.pods: dict[str, Pod] = {}
        self.containers: dict[str, Container] = {}
        self._names: dict[str, str] = {}  # reserved name -> id
        self._next_ip = 2
        self._listeners: set[asyncio.Queue[Event]] = set()

    # --- lookup -------------------------------------------------------------------------

    def resolve_pod_id(self, ref: str) -> str | None:
        """The pod a full id or a unique id prefix names, as containerd's id index does."""
        if ref in self.pods:
            return ref
        hits = [pid for pid in self.pods if ref and pid.startswith(ref)]
        return hits[0] if len(hits) == 1 else None

    def resolve_container_id(self, ref: str) -> str | None:
        if ref in self.containers:
            return ref
        hits = [cid for cid in self.containers if ref and cid.startswith(ref)]
        return hits[0] if len(hits) == 1 else None

    def get_pod(self, ref: str) -> Pod:
        pid = self.resolve_pod_id(ref)
        if pid is None:
            raise FakeRuntimeError(
                grpc.StatusCode.NOT_FOUND,
                f'an error occurred when try to find sandbox "{ref}": not found',
            )
        return self.pods[pid]

    def get_container(self, ref: str) -> Container:
        cid = self.resolve_container_id(ref)
        if cid is None:
            raise FakeRuntimeError(
                grpc.StatusCode.NOT_FOUND,
                f'an error occurred when try to find container "{ref}": not found',
            )
        return self.containers[cid]

    def pod_containers(self, pod_id: str) -> list[Container]:
        return [c for c in self.containers.values() if c.pod_id == pod_id]

    # --- events -------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._listeners.add(queue)
        return queue

    @property
    def event_listeners(self) -> int:
        """How many GetContainerEvents streams are open."""
        return len(self._listeners)

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._listeners.discard(queue)

    def _emit(self, event: int, ctr: Container) -> None:
        pod = self.pods.get(ctr.pod_id)
        if pod is None:
            return
        snapshot = dataclasses.replace(ctr)
        for queue in self._listeners:
            queue.put_nowait((event, snapshot, pod))

    # --- pods ---------------------------------------------------------------------------

    def _reserve(self, name: str, owner: str, kind: str) -> None:
        holder = self._names.get(name)
        if holder is not None:
            raise FakeRuntimeError(
                grpc.StatusCode.ALREADY_EXISTS,
                f'failed to reserve {kind} name "{name}": name "{name}" is reserved for "{holder}"',
            )
        self._names[name] = owner

    def _release(self, owner: str) -> None:
        for name in [n for n, o in self._names.items() if o == owner]:
            del self._names[name]

    def run_pod(self, config: v1.PodSandboxConfig, runtime_handler: str = "") -> Pod:
        md = config.metadata
        if not md.name or not md.namespace:
            raise FakeRuntimeError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "sandbox config must include metadata name and namespace",
            )
        pod_id = new_id()
        self._reserve("_".join([md.name, md.namespace, md.uid, str(md.attempt)]), pod_id, "sandbox")
        ip = f"10.88.{self._next_ip // 250}.{self._next_ip % 250 + 2}"
        self._next_ip += 1
        pod = Pod(pod_id, config, runtime_handler, time.time_ns(), ip)
        self.pods[pod_id] = pod
        log.info("pod %s (%s/%s) ready", pod_id, md.namespace, md.name)
        return pod

    def stop_pod(self, ref: str) -> None:
        pod = self.get_pod(ref)
        for ctr in self.pod_containers(pod.id):
            if ctr.state == v1.CONTAINER_RUNNING:
                self._stop(ctr, exit_code=137)
        pod.state = v1.SANDBOX_NOTREADY

    def remove_pod(self, ref: str) -> None:
        pid = self.resolve_pod_id(ref)
        if pid is None:
            return  # CRI: removing a pod that is gone is not an error.
        # CRI: running containers of a removed pod are forcibly stopped and removed.
        self.stop_pod(pid)
        for ctr in self.pod_containers(pid):
            self.remove_container(ctr.id)
        self._release(pid)
        del self.pods[pid]

    # --- containers ---------------------------------------------------------------------

    def create_container(self, pod_ref: str, config: v1.ContainerConfig) -> Container:
        pod = self.get_pod(pod_ref)
        if pod.state != v1.SANDBOX_READY:
            raise FakeRuntimeError(
                grpc.StatusCode.FAILED_PRECONDITION, f'sandbox "{pod.id}" is not running'
            )
        image = self.images.find(config.image.image)
        if image is None:
            raise FakeRuntimeError(
                grpc.StatusCode.NOT_FOUND,
                f'failed to resolve image "{config.image.image}": not found',
            )
        ctr_id = new_id()
        md, pmd = config.metadata, pod.config.metadata
        if not md.name:
            raise FakeRuntimeError(
                grpc.StatusCode.INVALID_ARGUMENT, "container config must include metadata name"
            )
        name = "_".join([md.name, pmd.name, pmd.namespace, pmd.uid, str(md.attempt)])
        self._reserve(name, ctr_id, "container")
        log_dir = pod.config.log_directory
        log_path = f"{log_dir}/{config.log_path}" if log_dir and config.log_path else ""
        ref = image.repo_digests[0] if image.repo_digests else image.id
        ctr = Container(ctr_id, pod.id, config, image.id, ref, time.time_ns(), log_path)
        ctr.resources.CopyFrom(config.linux.resources)
        self.containers[ctr_id] = ctr
        self._emit(v1.CONTAINER_CREATED_EVENT, ctr)
        return ctr

    def start_container(self, ref: str) -> None:
        ctr = self.get_container(ref)
        if ctr.state != v1.CONTAINER_CREATED:
            raise FakeRuntimeError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'failed to set starting state for container "{ctr.id}": '
                f"container is in {v1.ContainerState.Name(ctr.state)} state",
            )
        ctr.state = v1.CONTAINER_RUNNING
        ctr.started_at = time.time_ns()
        self._emit(v1.CONTAINER_STARTED_EVENT, ctr)

    def stop_container(self, ref: str, exit_code: int = 0) -> None:
        """Stop a running container; like containerd, leave one in any other state as it is."""
        ctr = self.get_container(ref)
        if ctr.state == v1.CONTAINER_RUNNING:
            self._stop(ctr, exit_code)

    def _stop(self, ctr: Container, exit_code: int) -> None:
        ctr.finished_at = time.time_ns()
        ctr.exit_code = exit_code
        ctr.reason = "Completed" if exit_code == 0 else "Error"
        ctr.state = v1.CONTAINER_EXITED
        self._emit(v1.CONTAINER_STOPPED_EVENT, ctr)

    def remove_container(self, ref: str) -> None:
        cid = self.resolve_container_id(ref)
        if cid is None:
            return  # CRI: removing a container that is gone is not an error.
        ctr = self.containers[cid]
        if ctr.state == v1.CONTAINER_RUNNING:
            self._stop(ctr, 137)  # CRI: a running container is forcibly stopped first.
        self._emit(v1.CONTAINER_DELETED_EVENT, ctr)
        self._release(cid)
        del self.containers[cid]
