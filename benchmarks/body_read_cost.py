"""What the relay's own protobuf readers cost a message, apart from sockets: the v1-only check of
a translated CreateContainer request (proxy/bodycheck.py's `inspect`: a kubelet-like container
with 20 env vars, 20 labels and annotations, 5 mounts, a security context) and the pod facts of a
100-container ListContainers relist (proxy/podfacts.py's `reply_records`, what fault rules on pods
read from each relist), in a loop. Modes: `check`, `relist`.

    valgrind --tool=callgrind --instr-atstart=no .venv/bin/python benchmarks/body_read_cost.py check \\
        --times 300 --callgrind      # then again with --times 100: the difference / 200 per message

An older checkout runs it with `env PYTHONPATH=OLD OLD/.venv/bin/python`. Prints the thread CPU
time per message (best of the run, so noisy on a loaded machine: prefer the counts).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from chunk_cost import timed
from payloads import replies

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.proxy import bodycheck, podfacts

CREATE = "/runtime.v1.RuntimeService/CreateContainer"


def create_request() -> bytes:
    """A CreateContainer request as a kubelet sends one for an ordinary pod's container."""
    pairs = {f"app.kubernetes.io/key-{i}": f"value-{i}" for i in range(20)}
    config = v1.ContainerConfig(
        metadata=v1.ContainerMetadata(name="app"), image=v1.ImageSpec(image="registry.k8s.io/app:1.27"),
        command=["/app"], args=["--port=8080", "--verbose"], working_dir="/srv",
        envs=[v1.KeyValue(key=f"ENV_{i}", value=f"value-{i}".encode()) for i in range(20)],
        mounts=[v1.Mount(container_path=f"/mnt/{i}", host_path=f"/var/lib/kubelet/pods/p/volumes/{i}")
                for i in range(5)],
        labels=pairs, annotations=pairs, log_path="app/0.log",
        linux=v1.LinuxContainerConfig(security_context=v1.LinuxContainerSecurityContext(
            run_as_user=v1.Int64Value(value=1000), readonly_rootfs=True)))
    return v1.CreateContainerRequest(pod_sandbox_id="p" * 64, config=config,
                                     sandbox_config=v1.PodSandboxConfig()).SerializeToString()


def work(mode: str) -> Callable[[], object]:
    if mode == "check":
        message = create_request()
        return lambda: bodycheck.inspect(CREATE, message)
    relist = replies()["ListContainers"].SerializeToString()
    return lambda: podfacts.reply_records("ListContainers", relist)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("check", "relist"))
    parser.add_argument("--times", type=int, default=10000, help="messages read, after three to warm up")
    parser.add_argument("--callgrind", action="store_true", help="under callgrind: count the timed reads only")
    args = parser.parse_args()
    read = work(args.mode)
    spent = timed(lambda _: read(), [None] * (args.times + 3), args.callgrind)
    print(f"{args.mode}: {spent / args.times / 1000:.2f} us a message ({args.times} messages)")


if __name__ == "__main__":
    main()
