"""A private, real containerd for the integration tests, and the means to leave nothing behind.

`Containerd.start()` writes a config whose root, state, sockets, runc root and CNI folders all
lie in one short folder under /tmp, starts Debian's containerd 1.6 on it, waits for the socket
and imports the test images (tests/containerd/build_images.py) into the `k8s.io` namespace, the
only one the CRI sees. `Containerd.stop()` removes every pod through the CRI, stops containerd,
and, should anything outlive that (a crash), deletes runc's containers, kills the shims (found
by their `-address` argument, never by name) and their sockets, removes the pods' cgroups and
the bridge, unmounts what is still mounted under the folder and deletes it.

Facts this relies on are in ../shared/notes/kubelet-and-runtimes.md: no CAP_SYS_RESOURCE
here (hence `restrict_oom_score_adj`), no registry (so local images, and pulls sent to a closed
port). With Debian's containernetworking-plugins a private bridge (no gateway, no masquerade)
gives pods their own network; without it only host-network pods run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import grpc

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc

log = logging.getLogger(__name__)

IMAGES_DIR = pathlib.Path(__file__).resolve().parent.parent / "containerd" / ".images"
BUILD_IMAGES = IMAGES_DIR.parent / "build_images.py"
PAUSE_REF = "localhost/cri-proxy/pause:1.0"
BUSYBOX_REF = "localhost/cri-proxy/busybox:1.0"
THROWAWAY_REF = "localhost/cri-proxy/throwaway:1.0"
IMAGE_TARS = ("pause.tar", "busybox.tar", "throwaway.tar")
NAMESPACE = "k8s.io"

UNREACHABLE_REGISTRY = "http://127.0.0.1:1"

HOSTS_TOML = """\
server = "{registry}"
[host."{registry}"]
  capabilities = ["pull", "resolve"]
"""

SKIP_REASON = "needs root and Debian's containerd package; CI installs it via tests/containerd/setup.sh"
# The kubelet's limits (16 MiB both ways); grpcio's default receive limit is 4 MiB.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]

CONFIG = """\
version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snapshotter}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{dir}/runc"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{dir}/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{dir}/cni/net.d"
"""

# A bridge that is no gateway and masquerades nothing: pods get their own network namespace and
# an address, and no host routing or firewall rule changes.
CNI_CONFLIST = """\
{{
  "cniVersion": "0.4.0",
  "name": "cri-proxy-test",
  "plugins": [{{
    "type": "bridge", "bridge": "{bridge}", "isGateway": false, "ipMasq": false,
    "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{subnet}"}}]], "dataDir": "{dir}/cni/ipam"}}
  }}]
}}
"""
CNI_BIN = pathlib.Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")


def required() -> bool:
    """CI sets CRI_PROXY_REQUIRE_CONTAINERD=1: there, a missing containerd fails, never skips."""
    return os.environ.get("CRI_PROXY_REQUIRE_CONTAINERD", "") not in ("", "0")


def skip_reason() -> str | None:
    """Why a real containerd cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return SKIP_REASON + " (not root)"
    for tool in ("containerd", "ctr", "runc"):
        if shutil.which(tool) is None:
            return SKIP_REASON + f" ({tool} not found)"
    images_cached = all((IMAGES_DIR / name).exists() for name in IMAGE_TARS)
    if not images_cached and (shutil.which("gcc") is None or not pathlib.Path("/bin/busybox").exists()):
        return SKIP_REASON + " (test images not built and gcc or busybox-static missing)"
    return None


def overlay_works(workdir: pathlib.Path) -> bool:
    """Whether an overlay mount works on the filesystem that holds workdir (not on every /tmp)."""
    probe = workdir / "overlay-probe"
    dirs = [probe / name for name in ("lower", "upper", "work", "merged")]
    for path in dirs:
        path.mkdir(parents=True)
    lower, upper, work, merged = dirs
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    try:
        done = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
                              capture_output=True, timeout=10)
        if done.returncode != 0:
            return False
        subprocess.run(["umount", str(merged)], check=True, timeout=10)
        return True
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def ensure_images() -> list[pathlib.Path]:
    """The image tarballs; the builder rebuilds them only if missing or stale (cheap otherwise)."""
    done = subprocess.run([sys.executable, str(BUILD_IMAGES)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{BUILD_IMAGES} failed ({done.returncode}): {done.stderr.strip()}")
    return [IMAGES_DIR / name for name in IMAGE_TARS]


def wait_for_socket(path: pathlib.Path, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until a unix socket at path accepts connections."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {path} was ready")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(str(path))
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} not connectable after {timeout} s") from None
            time.sleep(0.02)


def mounts_under(prefix: pathlib.Path) -> list[str]:
    """Mount points at or below prefix, deepest first so they can be unmounted in order."""
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].replace("\\040", " ")
            if point == str(prefix) or point.startswith(str(prefix) + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def processes_with_arg(arg: str) -> list[int]:
    """Pids whose command line contains arg as one whole argument."""
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arg.encode() in argv:
            pids.append(int(entry.name))
    return pids


def shim_arg(pid: int, flag: str) -> str | None:
    """The value after flag in a process's command line (e.g. a shim's `-id`)."""
    try:
        argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return None
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def shim_socket(address: pathlib.Path, shim_id: str) -> pathlib.Path:
    """Where containerd 1.6 puts a shim's socket: always /run/containerd/s/, named by a hash of
    containerd's address, the namespace and the shim id. A killed shim leaves it behind."""
    digest = hashlib.sha256(f"{address}/{NAMESPACE}/{shim_id}".encode()).hexdigest()
    return pathlib.Path("/run/containerd/s") / digest


def runc_containers(runc_root: pathlib.Path) -> list[tuple[pathlib.Path, str]]:
    """(runc root, container id) of what runc still knows: the shim uses <Root>/<namespace>."""
    if not runc_root.is_dir():
        return []
    return sorted((ns, entry.name) for ns in runc_root.iterdir() if ns.is_dir()
                  for entry in ns.iterdir() if entry.is_dir())


def remove_cgroups(parent: str) -> None:
    """Remove a cgroup subtree in every hierarchy (runc removes its leaves, not their parents)."""
    hierarchies = [pathlib.Path("/sys/fs/cgroup")]
    hierarchies += [path for path in hierarchies[0].iterdir() if path.is_dir() and not path.is_symlink()]
    for hierarchy in hierarchies:
        top = hierarchy / parent.lstrip("/")
        if not top.is_dir():
            continue
        for folder, _, _ in sorted(os.walk(top), key=lambda walked: len(walked[0]), reverse=True):
            try:
                os.rmdir(folder)
            except OSError as err:
                log.warning("could not remove cgroup %s: %s", folder, err)


def remove_all_pods(sock: pathlib.Path, timeout: float = 30) -> int:
    """Stop and remove every pod sandbox (and so every container) through CRI v1."""
    with grpc.insecure_channel(f"unix://{sock}", options=CHANNEL_OPTIONS) as channel:
        runtime = v1_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call,unused-ignore]
        pods = runtime.ListPodSandbox(v1.ListPodSandboxRequest(), timeout=timeout).items
        for pod in pods:
            runtime.StopPodSandbox(v1.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=timeout)
            runtime.RemovePodSandbox(v1.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=timeout)
        leftover = runtime.ListContainers(v1.ListContainersRequest(), timeout=timeout).containers
        for container in leftover:
            runtime.RemoveContainer(v1.RemoveContainerRequest(container_id=container.id), timeout=timeout)
    return len(pods)


@dataclass
class Containerd:
    """One private containerd process and everything it owns."""

    dir: pathlib.Path = field(default_factory=lambda: pathlib.Path(tempfile.mkdtemp(prefix="ctd-", dir="/tmp")))
    proc: subprocess.Popen[bytes] | None = None
    snapshotter: str = ""
    cni: bool = False

    @property
    def sock(self) -> pathlib.Path:
        return self.dir / "c.sock"

    @property
    def cgroup_parent(self) -> str:
        """The cgroup under which test pods go (PodSandboxStats needs a pod cgroup)."""
        return "/" + self.dir.name

    @property
    def bridge(self) -> str:
        """The CNI bridge's name, unique to this folder (interface names are capped at 15)."""
        return "crip" + hashlib.sha256(self.dir.name.encode()).hexdigest()[:8]

    @property
    def subnet(self) -> str:
        """A /24 for pods, picked from 10.250.0.0/16 by folder name, so runs rarely collide."""
        return f"10.250.{hashlib.sha256(self.dir.name.encode()).digest()[0]}.0/24"

    @property
    def log_path(self) -> pathlib.Path:
        return self.dir / "containerd.log"

    def ctr(self, *args: str, address: pathlib.Path | None = None, timeout: float = 30) -> str:
        """Run `ctr` against this containerd (or another address, e.g. a proxy) in k8s.io."""
        argv = ["ctr", "--address", str(address or self.sock), "-n", NAMESPACE, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def import_image(self, tarball: pathlib.Path) -> None:
        self.ctr("images", "import", str(tarball))

    def start(self, timeout: float = 20) -> None:
        images = ensure_images()
        self.snapshotter = "overlayfs" if overlay_works(self.dir) else "native"
        config = self.dir / "config.toml"
        self.cni = all((CNI_BIN / plugin).exists() for plugin in CNI_PLUGINS)
        cni_bin = CNI_BIN if self.cni else self.dir / "cni" / "bin"
        config.write_text(CONFIG.format(dir=self.dir, sock=self.sock, pause=PAUSE_REF,
                                        snapshotter=self.snapshotter, cni_bin=cni_bin))
        for sub in ("cni/bin", "cni/net.d", "logs"):
            (self.dir / sub).mkdir(parents=True)
        if self.cni:
            conflist = CNI_CONFLIST.format(bridge=self.bridge, subnet=self.subnet, dir=self.dir)
            (self.dir / "cni" / "net.d" / "10-cri-proxy-test.conflist").write_text(conflist)
        # Pulls from the test images' registry ("localhost") fail the same way on every machine,
        # whatever listens on localhost:80. containerd 1.6 ignores `server` without a [host].
        hosts = self.dir / "certs.d" / "localhost" / "hosts.toml"
        hosts.parent.mkdir(parents=True)
        hosts.write_text(HOSTS_TOML.format(registry=UNREACHABLE_REGISTRY))
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for_socket(self.sock, timeout, self.proc)
            self._wait_for_cri(timeout)
            for image in images:
                self.import_image(image)
        except BaseException:
            self.stop()
            raise
        log.info("containerd %d on %s (snapshotter %s)", self.proc.pid, self.sock, self.snapshotter)

    def _wait_for_cri(self, timeout: float) -> None:
        """The socket accepts before the CRI plugin registers; wait until it answers Version."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(f"unix://{self.sock}") as channel:
            runtime = v1_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call,unused-ignore]
            while True:
                try:
                    runtime.Version(v1.VersionRequest(), timeout=2)
                    return
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def stop(self) -> None:
        """Remove pods, stop containerd, kill its shims, unmount and delete its folder."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    remove_all_pods(self.sock)
                except grpc.RpcError as err:
                    log.warning("could not remove pods before stopping containerd: %s", err)
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            self._reap_leftovers()

    def _reap_leftovers(self) -> None:
        for root, name in runc_containers(self.dir / "runc"):
            log.warning("deleting leftover runc container %s", name)
            subprocess.run(["runc", "--root", str(root), "delete", "--force", name],
                           capture_output=True, check=False, timeout=10)
        for pid in processes_with_arg(str(self.sock)):
            log.warning("killing leftover shim %d of %s", pid, self.sock)
            shim_id = shim_arg(pid, "-id")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if shim_id:
                shim_socket(self.sock, shim_id).unlink(missing_ok=True)
        remove_cgroups(self.cgroup_parent)
        if pathlib.Path("/sys/class/net", self.bridge).exists():
            subprocess.run(["ip", "link", "delete", self.bridge], check=False, timeout=10)
        for point in mounts_under(self.dir):
            log.warning("unmounting leftover %s", point)
            subprocess.run(["umount", "-l", point], check=False, timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
