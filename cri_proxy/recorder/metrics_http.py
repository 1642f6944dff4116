"""The metrics peer's HTTP endpoint: /metrics, /healthz and /readyz on TCP or a unix socket.

prometheus_client's WSGI app renders the registry; wsgiref serves it on a thread of its own,
so a slow scraper never blocks the recorder's loop. A listen address is `HOST:PORT`
(`127.0.0.1:9464`, `[::1]:9464`, port 0 for any free one) or `unix:///path/metrics.sock`.
`/healthz` answers 200 while the process serves at all; `/readyz` asks the readiness
callable, which returns None when ready or the reason it is not (503, the reason as body).
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import stat
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app

from cri_proxy.model import options

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9464"  # the port OpenTelemetry's Prometheus exporters use by convention
Readiness = Callable[[], str | None]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def parse_listen(listen: str) -> tuple[str, int] | str:
    """(host, port) for TCP, a path for `unix://`; ConfigError for anything else (model.options parses it)."""
    return options.parse_listen(listen, "metrics listen")


def make_app(registry: CollectorRegistry, ready: Readiness | None = None) -> WsgiApp:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            try:
                reason = ready() if ready is not None else None
            except Exception as exc:  # a broken check means not ready, never a dead endpoint
                reason = f"readiness check failed: {exc}"
            if reason is None:
                return _text(start_response, "200 OK", "ready\n")
            return _text(start_response, "503 Service Unavailable", reason + "\n")
        return _text(start_response, "404 Not Found", "not found: try /metrics, /healthz or /readyz\n")

    return app


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


class _Handler(WSGIRequestHandler):
    def address_string(self) -> str:
        return str(self.client_address[0])

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("metrics: %s " + format, self.address_string(), *args)


class _TcpServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("metrics: a request from %s failed", client_address, exc_info=True)


class _Tcp6Server(_TcpServer):
    address_family = socket.AF_INET6


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """wsgiref's server on a unix socket: its TCP-only bind step replaced by the environ it sets up."""

    daemon_threads = True
    application: WsgiApp | None = None
    base_environ: dict[str, Any]

    def server_bind(self) -> None:
        socketserver.UnixStreamServer.server_bind(self)
        self.server_name, self.server_port = "localhost", 0
        WSGIServer.setup_environ(self)  # type: ignore[arg-type]  # it only sets attributes

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        # wsgiref reads client_address[0] as a host; a unix peer has no address at all.
        sock, _ = self.socket.accept()
        return sock, ("unix", 0)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("metrics: a request on %s failed", self.server_address, exc_info=True)

    def set_app(self, application: WsgiApp) -> None:
        self.application = application

    def get_app(self) -> WsgiApp | None:
        return self.application


class MetricsServer:
    """A running endpoint; `close()` stops it and removes its unix socket."""

    def __init__(self, listen: str, app: WsgiApp, poll_interval_s: float = 0.5) -> None:
        # poll_interval_s: how often the serving thread looks for close(), so how long close()
        # may wait (socketserver's own default); tests that open and close many set it small.
        target = parse_listen(listen)
        self.unix_path = target if isinstance(target, str) else None
        server: _UnixServer | _TcpServer
        if isinstance(target, str):
            if os.path.exists(target) and stat.S_ISSOCK(os.stat(target).st_mode):
                os.unlink(target)  # a socket left by a run that died; binding would fail
            server = _UnixServer(target, _Handler)
            self.address = f"unix://{target}"
        else:
            server = (_Tcp6Server if ":" in target[0] else _TcpServer)(target, _Handler)
            host, port = server.server_address[:2]
            self.address = f"[{host!s}]:{port}" if ":" in str(host) else f"{host!s}:{port}"
        server.set_app(app)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(poll_interval_s,), name="metrics-http",
                                        daemon=True)
        self._thread.start()
        log.info("metrics: serving /metrics, /healthz and /readyz on %s", self.address)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        if self.unix_path is not None and os.path.exists(self.unix_path):
            os.unlink(self.unix_path)


def serve(listen: str, registry: CollectorRegistry, ready: Readiness | None = None,
          poll_interval_s: float = 0.5) -> MetricsServer:
    """Start serving `registry` on `listen` in a thread; returns at once."""
    return MetricsServer(listen, make_app(registry, ready), poll_interval_s)
