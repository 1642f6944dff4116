"""A CRI client in a process of its own whose process name the test chooses (as `crictl`
would be `crictl`): `python -m tests.helpers.namedclient NAME unix:///proxy.sock`.

It names itself with prctl(PR_SET_NAME), which sets /proc/self/comm, before it connects;
then makes a Version call, runs a pod sandbox and removes it (a state-changing call the
tests look for), prints its pid and exits. `run_named_client` runs it and returns that pid.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

from tests.conftest import ROOT

PR_SET_NAME = 15


def run_named_client(name: str, endpoint: str, timeout: float = 30.0) -> int:
    """Runs the client to its end; its pid (it has exited by then)."""
    done = subprocess.run([sys.executable, "-m", "tests.helpers.namedclient", name, endpoint], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def main(name: str, endpoint: str) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    import grpc

    from cri_proxy.pb.runtime.v1 import api_pb2 as v1
    from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc

    with grpc.insecure_channel(endpoint) as channel:
        rt = v1_grpc.RuntimeServiceStub(channel)
        rt.Version(v1.VersionRequest(), timeout=10)
        config = v1.PodSandboxConfig(metadata=v1.PodSandboxMetadata(name="by-client", namespace="t", uid="u"))
        pod = rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config), timeout=10)
        rt.RemovePodSandbox(v1.RemovePodSandboxRequest(pod_sandbox_id=pod.pod_sandbox_id), timeout=10)
    print(os.getpid())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
