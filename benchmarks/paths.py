"""The ways a call can reach the backend: direct, through cri-proxy, through nginx.

Each `Path` names the unix socket the load generator dials and the processes
whose CPU and memory count against it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from procs import Children, wait_for_socket

ROOT = Path(__file__).resolve().parent.parent  # the checkout whose proxy the default routes run
PROXY_CMD = "{python} -m cri_proxy run --listen unix://{listen} --runtime-endpoint unix://{runtime}"

NGINX_CONF = """\
# nginx as the reference C proxy: HTTP/2 terminated on both sides, one worker
# (one event loop, like cri-proxy), connections kept open both ways, and a reply
# buffer that takes a 1 MB reply at once (the 4-8 KB default doubles its latency).
{user}worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 16m;
    keepalive_requests 100000000;
    keepalive_timeout 1h;
    upstream runtime {{
        server unix:{runtime};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen unix:{listen} http2;
        location / {{
            grpc_pass grpc://runtime;
            grpc_read_timeout 1h;
            grpc_buffer_size 1m;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Route:
    """A way to the backend: its name, the socket to dial, the pid whose tree it costs."""

    name: str
    socket: Path
    pid: int | None  # None: nothing between client and backend
    translated: bool = False  # in front of the v1alpha2-only backend: a v1 client's calls are translated


def start_backend(children: Children, binary: Path, tmp: Path, replies: Path, events: int,
                  api: str = "") -> tuple[Route, int]:
    """The direct route (of the v1 and v1alpha2 backend, or of the v1alpha2-only one), and the backend's pid."""
    name = "backend-v1alpha2" if api else "backend"
    sock, log = tmp / f"{name}.sock", tmp / f"{name}.log"
    proc = children.start([str(binary), str(sock), str(replies), str(events)] + ([api] if api else []), log)
    wait_for_socket(sock, proc, log)
    return Route("direct", sock, None), proc.pid


def proxy_available(template: str) -> str | None:
    """Why the proxy cannot run, or None when it can."""
    if template != PROXY_CMD:
        return None
    probe = subprocess.run([sys.executable, "-m", "cri_proxy", "run", "--help"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        return "`python -m cri_proxy run --help` failed: " + probe.stderr.decode(errors="replace").strip()[-200:]
    return None


def start_proxy(children: Children, tmp: Path, runtime: Path, template: str, name: str = "proxy",
                old_runtime: Path | None = None) -> Route:
    """Start a proxy from its command template ({python} {listen} {runtime} {tmp} filled in, and
    {old_runtime}, the v1alpha2-only backend: a route using it is a translated one)."""
    sock, log = tmp / f"{name}.sock", tmp / f"{name}.log"
    argv = template.format(python=sys.executable, listen=sock, runtime=runtime, tmp=tmp,
                           old_runtime=old_runtime or runtime).split()
    # Started in the temp dir, with this checkout first on its path: `python -m` puts the
    # working directory first on sys.path, so a route started from inside another checkout ran
    # that one, whatever PYTHONPATH its command set (`env PYTHONPATH=OTHER {python} ...`).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = children.start(argv, log, cwd=tmp, env=env)
    wait_for_socket(sock, proc, log, timeout=30)
    return Route(name, sock, proc.pid, translated="{old_runtime}" in template)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def start_nginx(children: Children, binary: str, tmp: Path, runtime: Path) -> Route:
    home, sock = tmp / "nginx", tmp / "nginx.sock"
    home.mkdir()
    conf, log = home / "nginx.conf", home / "error.log"
    # As root, nginx would drop its worker to an account that cannot reach our sockets.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(dir=home, runtime=runtime, listen=sock, user=user))
    proc = children.start([binary, "-p", str(home), "-c", str(conf), "-e", str(log)], home / "stdout.log")
    wait_for_socket(sock, proc, log)
    return Route("nginx", sock, proc.pid)
