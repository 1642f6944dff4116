"""The replay: re-issue recorded calls against a target runtime, in order, and compare.

Read-only calls are replayed by default; the methods of `model.cri.MUTATING` only with
`allow_mutations`. Ids created by replayed RunPodSandbox/CreateContainer calls are remapped
(`remap.IdMap`). The source recording is only read: it never changes. With `db_out` the
replay is itself recorded, through the normal `Recorder`, as a new session whose config says
what it replayed (`db_out` may name the source itself, when the user wants the two side by side):

    {"replay_of": {"db": "/abs/source.db", "session": 3, "sessions": [3]}, "target": ..., ...}

and each replayed call carries the note `replay of call <id>` (the source call's id), so the
two can be joined with SQL (see cri_proxy/replay/README.md).

`progress` hears of each call (replay/progress.py). `stop` ends a replay early and cleanly (the
CLI sets it on Ctrl-C): the call or pacing wait in flight is cancelled and not counted, the
replay's session is closed, and the result holds the calls done so far.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from cri_proxy.messages.decode import decode_message, method_types
from cri_proxy.model.call import FORMAT_VERSION, Direction, Message, Outcome, RecordedCall, api_version_of
from cri_proxy.model.cri import MUTATING
from cri_proxy.model.endpoints import unix_path
from cri_proxy.model.errors import ConfigError
from cri_proxy.model.session import SessionInfo
from cri_proxy.model.status import STOPPED_BY_CLIENT, status_name
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.replay import issue
from cri_proxy.replay.compare import Comparer, Difference
from cri_proxy.replay.pace import Pacer
from cri_proxy.replay.progress import Progress
from cri_proxy.replay.remap import IdMap
from cri_proxy.replay.results import CallResult, ReplayResult, Verdict
from cri_proxy.store.reader import CallStream
from cri_proxy.store.rows import StoredCall
from cri_proxy.store.selection import Selection

log = logging.getLogger(__name__)

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 32 << 20), ("grpc.max_send_message_length", 32 << 20)]


@dataclass
class ReplayOptions:
    db: str
    target: str
    selection: Selection = field(default_factory=Selection)
    allow_mutations: bool = False
    speed: float | None = None  # None: fast
    ignore: tuple[str, ...] = ()
    db_out: str | None = None  # None: the replay is not recorded (the source never is written)
    connect_timeout_s: float = 5.0
    call_timeout_s: float = 30.0
    max_stream_s: float = 5.0
    pace_text: str = "fast"


def skip_line(count: int) -> str:
    return f"{count} state-changing calls skipped: pass --allow-mutations to replay them"


async def run_replay(opts: ReplayOptions, echo: Callable[[str], None] = print, progress: Progress | None = None,
                     stop: asyncio.Event | None = None) -> ReplayResult:  # fmt: skip
    """Replays the selected calls (until `stop` is set); raises CriProxyError (bad database,
    session, target) before anything is sent."""
    progress = Progress() if progress is None else progress
    stop = asyncio.Event() if stop is None else stop
    target_path = unix_path(opts.target, "--target")
    source_path = os.path.abspath(opts.db)
    db_out = os.path.abspath(opts.db_out) if opts.db_out else None
    async with await CallStream.open(source_path, opts.selection) as calls:
        summary = await calls.summary()
        if not summary.count or summary.first_started_unix is None:
            raise ConfigError(f"no recorded calls in {opts.db} match the selection")
        if summary.mutating and not opts.allow_mutations:
            echo(skip_line(summary.mutating))
        result = ReplayResult(source_path, f"unix://{target_path}", summary.sessions, None, db_out)
        if not target_path.exists():
            raise ConfigError(f"cannot reach the target runtime at {result.target}: no such socket")
        async with grpc.aio.insecure_channel(result.target, options=CHANNEL_OPTIONS) as channel:
            try:
                await asyncio.wait_for(channel.channel_ready(), opts.connect_timeout_s)
            except TimeoutError:
                raise ConfigError(f"cannot reach the target runtime at {result.target} "
                                  f"(nothing answered within {opts.connect_timeout_s:g} s)") from None  # fmt: skip
            recorder = None
            if db_out is not None:
                recorder = Recorder(db_out, _session_info(opts, result))
                recorder.start()  # a database we cannot write is StorageError: one line, exit 2
                result.replay_session = recorder.session_id
                if _same_file(source_path, db_out):
                    # It now has a -wal: read it as a live file, not an immutable one.
                    await calls.reopen()
            started = time.monotonic()
            progress.start(summary.count)
            try:
                await _until_stopped(_replay_all(channel, calls, summary.first_started_unix, opts, recorder, result,
                                                 progress), stop)  # fmt: skip
            finally:
                result.elapsed_s = time.monotonic() - started
                progress.finish()
                if recorder is not None:
                    await asyncio.to_thread(recorder.close)
    return result


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a == b


def _session_info(opts: ReplayOptions, result: ReplayResult) -> SessionInfo:
    sel = opts.selection
    config: dict[str, Any] = {
        "replay_of": {"db": result.source, "session": sel.session, "sessions": result.source_sessions,
                      "since": sel.since, "until": sel.until, "where": sel.where},
        "command": "replay", "target": result.target, "allow_mutations": opts.allow_mutations,
        "pace": opts.pace_text, "ignore": list(opts.ignore),
    }  # fmt: skip
    return SessionInfo(listen=None, runtime_endpoint=result.target, config=config)


async def _until_stopped(work: Awaitable[None], stop: asyncio.Event) -> None:
    """Runs `work` to its end, or until `stop` is set: then it is cancelled where it waits
    (pacing, or a call in flight, which is then not counted) and waited for. One task for the
    whole replay, so a call costs nothing more for being stoppable."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if not task.cancelled():
        task.result()  # its error, if it raised one


async def _replay_all(channel: grpc.aio.Channel, calls: CallStream, first_started_unix: float, opts: ReplayOptions,
                      recorder: Recorder | None, result: ReplayResult, progress: Progress) -> None:  # fmt: skip
    ids = IdMap()
    comparer = Comparer(opts.ignore)
    pacer = Pacer(opts.speed, first_started_unix)
    n = -1  # the call's position in the selection: its stream id in the replay's recording
    async for call in calls:
        n += 1
        reason = _skip_reason(call, opts)
        if reason:
            _add(result, progress, CallResult(call.id, call.path, Verdict.SKIPPED, reason,
                                              recorded_status=_recorded_status(call), redacted=call.redacted))  # fmt: skip
            continue
        await pacer.wait_for(call.started_unix)
        request = ids.rewrite_request(call.path, call.requests[0] if call.requests else b"")
        wall = time.time()
        answer = await _send(channel, call, request, opts)
        if call.method in ("RunPodSandbox", "CreateContainer") and call.responses and answer.responses:
            ids.learn_from(call.path, call.responses[0], answer.responses[0])
        if recorder is not None:
            recorder.submit(_as_recorded(n, call, request, answer, wall, result.target))
        verdict = _judge(call, answer, ids, comparer)
        if verdict.verdict is not Verdict.MATCHED:
            log.info("call %d %s: %s: %s", call.id, call.method, verdict.verdict.value, verdict.reason)
        _add(result, progress, verdict)


def _add(result: ReplayResult, progress: Progress, verdict: CallResult) -> None:
    result.results.append(verdict)
    progress.advance(verdict.verdict)


def _skip_reason(call: StoredCall, opts: ReplayOptions) -> str:
    if call.call.format_version > FORMAT_VERSION:
        return f"recorded in call format {call.call.format_version} (this cri-proxy knows {FORMAT_VERSION})"
    if not call.is_cri or method_types(call.path) is None:
        return "not a CRI call"
    if call.method in MUTATING and not opts.allow_mutations:
        return "changes the node (pass --allow-mutations)"
    if not call.complete:
        return "message bytes not stored (over the payload cap, compressed, or dropped by redaction)"
    types = method_types(call.path)
    if types is not None and not types.server_streaming and call.outcome != Outcome.COMPLETED.value:
        return f"the recorded call never completed ({call.outcome})"
    return ""


async def _send(channel: grpc.aio.Channel, call: StoredCall, request: bytes,
                opts: ReplayOptions) -> issue.Answer:  # fmt: skip
    types = method_types(call.path)
    if types is not None and types.server_streaming:
        recorded_s = (call.duration_ms or 0.0) / 1000.0
        window = min(opts.max_stream_s, max(recorded_s, 0.2))
        if call.outcome == Outcome.COMPLETED.value and call.status_name not in STOPPED_BY_CLIENT:
            window = max(window, min(opts.max_stream_s, recorded_s * 2 + 1.0))  # let it finish itself
        return await issue.stream(channel, call.path, request, window)
    return await issue.unary(channel, call.path, request, opts.call_timeout_s)


def _recorded_status(call: StoredCall) -> str:
    return call.status_name or call.outcome


def _judge(call: StoredCall, answer: issue.Answer, ids: IdMap, comparer: Comparer) -> CallResult:
    replayed = "(cut after window)" if answer.cut else status_name(answer.code)
    res = CallResult(call.id, call.path, Verdict.MATCHED, recorded_status=_recorded_status(call),
                     replayed_status=replayed, replayed_message=answer.message or None, redacted=call.redacted,
                     duration_ms=round(answer.duration_s * 1000, 3))  # fmt: skip
    recorded_stopped = call.outcome != Outcome.COMPLETED.value or call.status_name in STOPPED_BY_CLIENT
    if answer.cut != recorded_stopped or (not answer.cut and answer.code != call.status_code):
        res.verdict = Verdict.FAILED
        res.reason = f"status {res.replayed_status}, recorded {res.recorded_status}"
        if answer.message:
            res.reason += f": {answer.message}"
        return res
    pairs = list(zip(call.responses, answer.responses))
    if not recorded_stopped and len(call.responses) != len(answer.responses):
        res.differences.append(Difference("(messages)", len(call.responses), len(answer.responses)))
    for i, (old, new) in enumerate(pairs):
        prefix = f"[{i}]" if len(call.responses) > 1 or len(answer.responses) > 1 else ""
        old_doc = decode_message(call.path, Direction.RESPONSE.value, old)
        new_doc = ids.back_to_recorded(decode_message(call.path, Direction.RESPONSE.value, new))
        res.differences += comparer.diff(old_doc, new_doc, prefix)
    if res.differences:
        res.verdict = Verdict.DIFFERED
        first = res.differences[0]
        res.reason = f"{len(res.differences)} fields differ, first {first.path or '(message)'}"
    if call.redacted:
        res.reason = (res.reason + "; " if res.reason else "") + "sent with the recording's redacted secrets"
    return res


def _as_recorded(n: int, call: StoredCall, request: bytes, answer: issue.Answer, wall: float,
                 target: str) -> RecordedCall:  # fmt: skip
    api = api_version_of(call.path)
    rec = RecordedCall(conn_id=1, stream_id=2 * n + 1, started_at=wall, path=call.path,
                       duration_s=answer.duration_s, upstream=target, client_api=api, upstream_api=api,
                       status_code=None if answer.cut else answer.code,
                       status_message=answer.message or None,
                       outcome=Outcome.CANCELLED if answer.cut else Outcome.COMPLETED,
                       notes=[f"replay of call {call.id}"])  # fmt: skip
    rec.add_message(Message(Direction.REQUEST, 0, 0.0, request))
    for i, (data, offset) in enumerate(zip(answer.responses, answer.offsets_s)):
        rec.add_message(Message(Direction.RESPONSE, i, offset, data))
    return rec
