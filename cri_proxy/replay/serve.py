"""`cri-proxy serve`: a grpc.aio server that answers CRI calls from a recording.

See `answers.py` for how a request finds its recorded answer. Recorded errors are answered
verbatim (status code and message). A method the recording never saw is UNIMPLEMENTED, a
recorded method with no close enough request NOT_FOUND; both are logged. The serve clock
starts with the first call served, at the recording's first call or where `--at` puts it
(`parse_at`: a time, `start`, `end`, `+5m` after the first call, `-5m` before the last), and
runs on from there: `--at end` serves the node as the recording last saw it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import stat
import time
from datetime import datetime, timezone
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from cri_proxy.model.endpoints import unix_path
from cri_proxy.model.errors import ConfigError, SocketInUseError
from cri_proxy.model.call import Outcome, api_version_of
from cri_proxy.messages.decode import method_types
from cri_proxy.model.status import STOPPED_BY_CLIENT
from cri_proxy.model.clock import utc_text
from cri_proxy.replay.answers import Ambiguous, Answers, Entry, NoAnswer, method_key
from cri_proxy.store.reader import load_calls
from cri_proxy.store.readonly import Recording
from cri_proxy.store.selection import Selection

log = logging.getLogger(__name__)

_CODES = {code.value[0]: code for code in grpc.StatusCode}
MAX_STREAM_GAP_S = 5.0  # a recorded stream's messages are spaced as recorded, up to this

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True)
class ServeOptions:
    db: str
    listen: str
    selection: Selection = Selection()
    api: str = "both"
    at: str | None = None  # where the served timeline starts (`parse_at`); None: the first call


class RecordedRuntime(grpc.GenericRpcHandler):
    """The handlers: any CRI path of the served versions whose method was recorded."""

    def __init__(self, answers: Answers, versions: tuple[str, ...], start_s: float = 0.0) -> None:
        self.answers = answers
        self.versions = versions
        self.start_s = start_s  # the recording's moment (seconds after its first call) served first
        self.served = 0
        self._clock: float | None = None

    def elapsed(self) -> float:
        """Where the served timeline is: seconds after the recording's first call."""
        if self._clock is None:
            self._clock = time.monotonic()
        return self.start_s + time.monotonic() - self._clock

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        path = str(details.method)
        types = method_types(path)
        if types is None or api_version_of(path) not in self.versions or not self.answers.knows(path):
            self.served += 1
            log.warning("serve: call %d %s: never recorded, answering UNIMPLEMENTED", self.served, path)
            return None
        if types.server_streaming:
            return grpc.unary_stream_rpc_method_handler(functools.partial(self._stream, path))
        return grpc.unary_unary_rpc_method_handler(functools.partial(self._unary, path))

    async def _pick(self, path: str, request: bytes, context: Context) -> Entry:
        self.served += 1
        n = self.served
        try:
            entry, how = self.answers.pick(path, request, self.elapsed())
        except NoAnswer as exc:
            log.warning("serve: call %d %s: %s, answering NOT_FOUND", n, method_key(path), exc)
            await context.abort(grpc.StatusCode.NOT_FOUND, f"cri-proxy serve: {exc}")
            raise  # abort raises; this keeps the type checker sure we never fall through
        except Ambiguous as exc:
            log.warning("serve: call %d %s: %s, answering UNKNOWN", n, method_key(path), exc)
            await context.abort(grpc.StatusCode.UNKNOWN, str(exc))
            raise
        log_fn: Callable[..., None] = log.info if how == "closest" else log.debug
        log_fn("serve: call %d %s: answered with recorded call %d (matched by %s)", n, method_key(path),
               entry.call.id, how)  # fmt: skip
        return entry

    async def _unary(self, path: str, request: bytes, context: Context) -> bytes:
        entry = await self._pick(path, request, context)
        call = entry.call
        if call.status_code:
            await context.abort(_CODES.get(call.status_code, grpc.StatusCode.UNKNOWN), call.status_message or "")
        return call.responses[0] if call.responses else b""

    async def _stream(self, path: str, request: bytes, context: Context) -> AsyncIterator[bytes]:
        entry = await self._pick(path, request, context)
        call = entry.call
        start = time.monotonic()
        for data, offset in zip(call.responses, call.response_offsets_s):
            delay = min(offset, MAX_STREAM_GAP_S) - (time.monotonic() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            yield data
        if call.outcome != Outcome.COMPLETED.value or call.status_name in STOPPED_BY_CLIENT:
            await asyncio.Event().wait()  # the recorded client ended it: stay open until this one does
        if call.status_code:
            await context.abort(_CODES.get(call.status_code, grpc.StatusCode.UNKNOWN), call.status_message or "")


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_at(value: str, first_unix: float, last_unix: float) -> float:
    """`--at` as seconds after the recording's first call: `start`, `end`, `+DURATION` after
    the first call, `-DURATION` before the last (`90s`, `5m`, `1.5h`), or a time (RFC 3339,
    `2026-12-01T03:12:00Z`, or UTC text as in `started_at`). ConfigError outside the recording."""
    text = value.strip().lower()
    if text in ("start", "end"):
        return 0.0 if text == "start" else last_unix - first_unix
    if text[:1] in ("+", "-"):
        number, unit = _split_duration(text[1:])
        seconds = number * _DURATION_UNITS[unit] if unit in _DURATION_UNITS else -1.0
        if seconds < 0:
            raise ConfigError(f"--at {value!r}: give a duration such as +90s, +5m, -1h")
        at = first_unix + seconds if text[0] == "+" else last_unix - seconds
    else:
        try:
            moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            raise ConfigError(f"--at {value!r}: give a time (2026-12-01T03:12:00Z), start, end, "
                              "+DURATION after the first call or -DURATION before the last") from None  # fmt: skip
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)  # as the recording's `_at` columns are
        at = moment.timestamp()
    if not first_unix <= at <= last_unix:
        raise ConfigError(f"--at {value!r} is {utc_text(at)} UTC, outside the recording: its calls run from "
                          f"{utc_text(first_unix)} to {utc_text(last_unix)} UTC")  # fmt: skip
    return at - first_unix


def _split_duration(text: str) -> tuple[float, str]:
    digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    try:
        return float(digits), (text[len(digits):] or "s")
    except ValueError:
        return -1.0, ""


def _versions(api: str) -> tuple[str, ...]:
    if api == "both":
        return ("v1", "v1alpha2")
    if api in ("v1", "v1alpha2"):
        return (api,)
    raise ConfigError(f"--api {api!r}: give v1, v1alpha2 or both")


def _claim_socket(path: str) -> None:
    """Removes a stale socket file; refuses a live one or a file that is not a socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"--listen {path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)
            return
    raise SocketInUseError(f"--listen {path}: something is already serving this socket")


class RecordedServer:
    """A running `serve`. Stop it with `await stop()`."""

    def __init__(self, server: grpc.aio.Server, handler: RecordedRuntime, path: str) -> None:
        self.server = server
        self.handler = handler
        self.path = path
        self.address = f"unix://{path}"

    async def stop(self, grace: float | None = None) -> None:
        await self.server.stop(grace)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


async def start_serve(opts: ServeOptions) -> RecordedServer:
    versions = _versions(opts.api)
    path = str(unix_path(opts.listen, "--listen"))
    recording = Recording(opts.db)
    try:
        calls = load_calls(recording.conn, opts.selection)
    finally:
        recording.close()
    if not calls:
        raise ConfigError(f"no recorded calls in {opts.db} match the selection")
    start_s = parse_at(opts.at, calls[0].started_unix, calls[-1].started_unix) if opts.at else 0.0
    handler = RecordedRuntime(Answers(calls), versions, start_s)
    _claim_socket(path)
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 32 << 20),
                                      ("grpc.max_send_message_length", 32 << 20)])  # fmt: skip
    server.add_generic_rpc_handlers([handler])
    try:
        server.add_insecure_port(f"unix://{path}")
    except RuntimeError as exc:
        raise ConfigError(f"--listen {path}: cannot listen there ({exc})") from None
    await server.start()
    methods = len(handler.answers.index)
    log.info("serving %d recorded calls (%d methods) of %s as CRI %s on unix://%s, from %s UTC",
             len(calls), methods, opts.db, "+".join(versions), path,
             utc_text(calls[0].started_unix + start_s))  # fmt: skip
    return RecordedServer(server, handler, path)


async def run_serve(opts: ServeOptions, echo: Callable[[str], None] = print) -> int:
    """Serves until SIGTERM or SIGINT."""
    served = await start_serve(opts)
    first = served.handler.answers.first_unix + served.handler.start_s
    echo(f"serving {opts.db} on {served.address} (CRI {opts.api}) from {utc_text(first)} UTC; Ctrl-C to stop")
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await served.stop(1.0)
    return 0
