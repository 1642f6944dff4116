"""Stats replies from a real containerd, to check node_stats.py's model against (run as root).

Starts a private containerd (tests/helpers/containerd_harness.py, as the integration tests do),
runs a few pods whose containers do different things: an idle sleeper, a loop that burns
CPU in bursts, one that fills and frees 16-48 MB of tmpfs (its memory cgroup), one that
writes files to its writable layer; then polls ListContainerStats and ListPodSandboxStats
every `--every` seconds, as the kubelet does every 10 s, and writes each reply's bytes to
`--out` (uvarint length, then the bytes, the container replies and pod replies alternating).
`--scrub` rewrites the machine's paths in the replies (the private containerd folder in the
writable layer's mountpoint) as a node's would read, so the file can be kept as test data.

    sudo .venv/bin/python benchmarks/real_stats.py --polls 36 --every 10 --out stats.bin --scrub
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.store.templates import fields
from cri_proxy.store.varints import uvarint
from tests.helpers import containerd_harness as harness

NODE_PATH = "/var/lib/containerd"
WORKLOADS = {  # container name: its shell loop (busybox applets only)
    "idle": "sleep 100000",
    "burst": "while :; do i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; sleep 3; done",
    "memory": "while :; do head -c $(( (RANDOM % 3 + 1) * 16000000 )) /dev/urandom > /dev/shm/x;"
              " sleep 7; rm -f /dev/shm/x; sleep 5; done",
    "writer": "n=0; while :; do n=$((n+1)); echo line $n >> /log; head -c 50000 /dev/urandom > /f$((n % 7));"
              " sleep 2; done",
}
PODS = {"web": ["idle", "burst"], "batch": ["memory", "writer"], "quiet": ["idle"]}


def _start_pods(runtime: v1_grpc.RuntimeServiceStub, ctd: harness.Containerd) -> None:
    for pod, names in PODS.items():
        uid = uuid.uuid4().hex
        options = v1.NamespaceOption(network=v1.POD if ctd.cni else v1.NODE, pid=v1.CONTAINER, ipc=v1.POD)
        config = v1.PodSandboxConfig(
            metadata=v1.PodSandboxMetadata(name=pod, uid=uid, namespace="stats", attempt=0),
            hostname=pod if ctd.cni else "", labels={"app": pod}, log_directory=str(ctd.dir / "logs" / uid),
            linux=v1.LinuxPodSandboxConfig(cgroup_parent=f"{ctd.cgroup_parent}/pod{uid}",
                                           security_context=v1.LinuxSandboxSecurityContext(namespace_options=options)))
        sandbox = runtime.RunPodSandbox(v1.RunPodSandboxRequest(config=config), timeout=60).pod_sandbox_id
        for name in names:
            container = v1.ContainerConfig(
                metadata=v1.ContainerMetadata(name=name), image=v1.ImageSpec(image=harness.BUSYBOX_REF),
                command=["sh", "-c", WORKLOADS[name]], labels={"app": pod}, log_path=f"{name}.log",
                linux=v1.LinuxContainerConfig(security_context=v1.LinuxContainerSecurityContext(
                    namespace_options=options)))
            made = runtime.CreateContainer(v1.CreateContainerRequest(pod_sandbox_id=sandbox, config=container,
                                                                     sandbox_config=config), timeout=60)
            runtime.StartContainer(v1.StartContainerRequest(container_id=made.container_id), timeout=60)


def _rewrite(data: bytes, folder: bytes) -> bytes:
    """data with every string that starts with `folder` (at any depth) written as a node's
    path, every other byte as containerd sent it (the lengths around it mended)."""
    found = fields(data, 0, len(data))
    if found is None or folder not in data:
        return data
    out = []
    for first, value, after, wire in found:
        inner = data[value:after]
        if wire != 2 or folder not in inner:
            out.append(data[first:after])
            continue
        inner = NODE_PATH.encode() + inner[len(folder):] if inner.startswith(folder) else _rewrite(inner, folder)
        out.append(data[first:value - len(uvarint(after - value))] + uvarint(len(inner)) + inner)
    return b"".join(out)


def scrub(reply: bytes, folder: str) -> bytes:
    """The reply with the private containerd folder's path (the writable layers' mountpoint)
    written as a node's."""
    out = _rewrite(reply, folder.encode())
    if folder.encode() in out:
        raise SystemExit("a machine path is left in a reply")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--polls", type=int, default=36)
    parser.add_argument("--every", type=float, default=10.0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--scrub", action="store_true")
    args = parser.parse_args()
    ctd = harness.Containerd()
    ctd.start()
    try:
        with grpc.insecure_channel(f"unix://{ctd.sock}", options=harness.CHANNEL_OPTIONS) as channel:
            runtime = v1_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call,unused-ignore]
            _start_pods(runtime, ctd)
            folder = str(ctd.dir / "root")
            calls = [channel.unary_unary(f"/runtime.v1.RuntimeService/{name}")
                     for name in ("ListContainerStats", "ListPodSandboxStats")]
            with open(args.out, "wb") as out:
                began = time.monotonic()
                for n in range(args.polls):
                    time.sleep(max(0.0, began + n * args.every - time.monotonic()))
                    for call in calls:
                        reply = call(b"", timeout=30)  # the runtime's own bytes, not parsed
                        reply = scrub(reply, folder) if args.scrub else reply
                        out.write(uvarint(len(reply)) + reply)
                    out.flush()
    finally:
        ctd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
