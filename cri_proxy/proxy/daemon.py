"""Running the proxy as a node daemon: the listen socket's life, signals, and a clean exit.

A stale socket file (left by a crashed proxy) is replaced; a live one means another proxy
is running and start-up is refused. The socket gets the configured mode and group before
any client can reach it. SIGTERM or SIGINT stops accepting, lets open calls finish within
the grace period and exits 0; a second signal skips the grace period.

Under systemd (Type=notify) the proxy says READY=1 only once its listen socket accepts, with
a STATUS= line saying what it forwards (and whether the runtime answers: an unreachable
runtime does not hold readiness back, since the proxy then serves exactly as a dead runtime
would), pings the watchdog while its event loop runs, and says STOPPING=1 at the first signal.

The socket checks are proxy.listen_socket's; the bridge started on demand, proxy.lazybridge's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cri_proxy.bridge.options import BridgeOptions, needs_bridge, relay_translation
from cri_proxy.faults.book import FaultBook
from cri_proxy.faults.rules import load_rules
from cri_proxy.model.endpoints import as_endpoint
from cri_proxy.model.errors import ConfigError
from cri_proxy.model.link import RelayState
from cri_proxy.model.options import RecordConfig, config_json
from cri_proxy.model.session import SessionInfo
from cri_proxy.model.upstream import UpstreamApis
from cri_proxy.proxy import control, faultwire
from cri_proxy.proxy.lazybridge import LazyBridge
from cri_proxy.proxy.listen_socket import check_upstream, prepare_listen_path, secure_socket
from cri_proxy.proxy.notify import Notifier
from cri_proxy.proxy.policy import TranslationPolicy
from cri_proxy.proxy.prober import VersionProber
from cri_proxy.proxy.recorder_link import RecorderProcess
from cri_proxy.proxy.server import BridgeRoute, RelayServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProxyConfig:
    listen: pathlib.Path
    runtime: pathlib.Path
    image: pathlib.Path | None = None
    socket_mode: int = 0o660
    socket_group: str | None = None
    grace_period: float = 10.0
    wait_for_upstream: float = 0.0
    record: RecordConfig | None = None
    translation: BridgeOptions = field(default_factory=BridgeOptions)
    faults: pathlib.Path | None = None  # --faults: the rules file, reloaded on SIGHUP
    control: pathlib.Path | None = None  # --control: the socket that changes the rules at run time


async def serve(config: ProxyConfig) -> int:
    """Run the proxy until SIGTERM/SIGINT; return the exit status."""
    for what, path in (("runtime endpoint", config.runtime), ("image endpoint", config.image)):
        if path is not None:
            check_upstream(what, path, config.wait_for_upstream)
    prepare_listen_path(config.listen)
    if config.control is not None:
        prepare_listen_path(config.control, "control socket")  # a stale one replaced, a live one refused
    recorder = _start_recording(config)
    notifier = Notifier()
    answers = _AnswerWatcher(recorder, notifier, config)
    prober = VersionProber(config.runtime, config.image, emulate_events=config.translation.emulate_events,
                           on_change=answers.changed, on_trouble=answers.trouble,
                           timeout=config.translation.probe_timeout)
    bridge = LazyBridge(config.listen.parent, config.runtime, config.image, config.translation, recorder, prober)
    book = FaultBook(load_rules(config.faults)) if config.faults is not None else None
    if book is None and config.control is not None:
        book = FaultBook()  # --control alone: no rules until some are added
    try:
        await prober.reprobe()  # one round at start (bounded); later ones run in the background
        server = await _listen(config, recorder, bridge, prober, book)
        answers.server = bridge.server = server
        try:
            async with control.serving(book, config.control):  # before READY=1: `faults add` may follow at once
                if recorder is not None and config.record is not None and config.record.require:
                    server.admission = recording_admission(recorder)
                notifier.ready(status_line(config, prober.apis, prober.trouble))  # the socket listens: connections are accepted
                answers.readiness(prober.trouble)
                notifier.start_watchdog()
                with _reloading(book, config.faults):
                    await _wait_for_signal(server, config.grace_period, notifier)
        finally:
            await notifier.stop_watchdog()
            with contextlib.suppress(FileNotFoundError):
                config.listen.unlink()
    finally:
        await prober.close()
        await bridge.stop()
        if recorder is not None:
            await recorder.aclose()
            stats = recorder.stats
            if config.record is not None and config.record.db is not None:
                log.info("recording closed: %d calls recorded, %d lost, %d skipped by the keep policy",
                         stats.recorded, stats.lost, stats.skipped)
    log.info("stopped")
    return 0


class _AnswerWatcher:
    """What follows a new answer from the prober: the session row, and re-routing.

    A connection is routed once, at its first call, by the answer of that moment. One routed
    by an answer that is now out of date (its first call came between the runtime's return
    and the probe's answer) would fail every call, so each open connection is drained: a
    GOAWAY, then closed once its open calls are done, and the client re-dials to be routed
    by the new answer.
    """

    def __init__(self, recorder: RecorderProcess | None, notifier: Notifier, config: ProxyConfig) -> None:
        self.recorder = recorder
        self.notifier = notifier
        self.config = config
        self.server: RelayServer | None = None

    def trouble(self, reason: str | None) -> None:
        if self.server is not None and self.server.versions is not None:  # STATUS= only once READY=1
            self.notifier.status(status_line(self.config, self.server.versions.apis, reason))
        self.readiness(reason)

    def readiness(self, trouble: str | None) -> None:
        """Tell the recorder process (which serves /readyz) whether the proxy accepts and the runtime answers."""
        if self.recorder is not None:
            self.recorder.relay_changed(RelayState(self.server is not None, trouble))

    def changed(self, apis: UpstreamApis) -> None:
        if self.server is not None:
            self.notifier.status(status_line(self.config, apis, None))  # an answer came: no trouble now
        self.readiness(None)
        if self.recorder is not None:
            self.recorder.update_session(runtime_api=apis.runtime_api, image_api=apis.image_api)
        if self.server is not None and self.server.connections:
            log.info("the runtime's CRI versions changed: draining %d open connection(s) so that they are "
                     "routed again", len(self.server.connections))
            for conn in list(self.server.connections):
                conn.drain()


def status_line(config: ProxyConfig, apis: UpstreamApis, trouble: str | None) -> str:
    """What the service manager shows: where calls go, what the runtime speaks, and why it does
    not answer (`trouble`, the prober's) when it does not."""
    text = f"forwarding {as_endpoint(config.listen)} to {as_endpoint(config.runtime)}"
    if config.image is not None and config.image != config.runtime:
        text += f" (images to {as_endpoint(config.image)})"
    if apis.known:
        text += f"; the runtime speaks {apis.describe()}"
    if trouble is not None:
        text += f"; runtime not answering: {trouble}"
    return text


def _start_recording(config: ProxyConfig) -> RecorderProcess | None:
    if config.record is None:
        log.info("recording is off (no --db)")
        return None
    if config.record.db is None:
        log.info("recording is off (no --db); the recorder process serves metrics and spans")
    session = SessionInfo(listen=as_endpoint(config.listen), runtime_endpoint=as_endpoint(config.runtime),
                          image_endpoint=as_endpoint(config.image) if config.image else None,
                          config=config_json(config))
    recorder = RecorderProcess(config.record, session)
    recorder.start()
    return recorder


async def _listen(config: ProxyConfig, tap: RecorderProcess | None, bridge: LazyBridge,
                  prober: VersionProber, faults: FaultBook | None = None) -> RelayServer:
    options = config.translation
    route = BridgeRoute(path=bridge.path, ready=bridge.ready,
                        needs=lambda path: needs_bridge(path, prober.apis, options))
    old_umask = os.umask(0o177)  # no window in which the new socket is open to everyone
    translation = TranslationPolicy(upstream_api=lambda path: relay_translation(path, prober.apis, options),
                                    cgroup_driver=options.cgroup_driver, strict=options.strict, faults=faults)
    server = RelayServer(config.listen, config.runtime, config.image, tap=tap, bridge=route, versions=prober,
                         translation=translation)
    try:
        await server.start()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {config.listen}: {exc.strerror}") from exc
    finally:
        os.umask(old_umask)
    secure_socket(config.listen, config.socket_mode, config.socket_group)
    log.info("listening on %s (mode %04o), forwarding to %s%s", as_endpoint(config.listen), config.socket_mode,
             as_endpoint(config.runtime),
             f", image calls to {as_endpoint(server.image_path)}" if server.image_path else "")
    return server


def recording_admission(recorder: RecorderProcess) -> Callable[[], str | None]:
    """For --require-recording: refuse new connections while calls cannot be recorded."""
    last_lost = recorder.stats.lost

    def admit() -> str | None:
        nonlocal last_lost
        stats = recorder.stats
        lost, last_lost = stats.lost - last_lost, stats.lost
        if not stats.healthy or lost or stats.queued >= recorder.options.max_queue_calls:
            return "recording is failing and --require-recording is set"
        return None

    return admit


@contextlib.contextmanager
def _reloading(book: FaultBook | None, path: pathlib.Path | None) -> Iterator[None]:
    """With --faults, SIGHUP reloads the rules file (a bad one keeps the rules loaded)."""
    if book is None or path is None:
        yield
        return
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, faultwire.reload, book, path)
    log.info("fault rules: %d loaded from %s (SIGHUP reloads them)", len(book.rules), path)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


async def _wait_for_signal(server: RelayServer, grace: float, notifier: Notifier) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    hurry = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stopping.is_set():
            log.info("%s again: closing open connections now", signal.Signals(signum).name)
            hurry.set()
        else:
            log.info("%s: stopping", signal.Signals(signum).name)
            stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await stopping.wait()
        notifier.stopping(f"stopping: open calls get up to {grace:g}s to finish")
        stop = asyncio.ensure_future(server.stop(grace))
        hurried = asyncio.ensure_future(hurry.wait())
        await asyncio.wait({stop, hurried}, return_when=asyncio.FIRST_COMPLETED)
        if not stop.done():
            stop.cancel()
            await server.stop(0)
        hurried.cancel()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
