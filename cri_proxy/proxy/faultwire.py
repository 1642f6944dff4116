"""Fault rules applied in the relay: one connection's injected errors, delays, hangs and closes.

With `--faults`, a connection whose calls some rule could take goes through the translator
(cri_proxy.proxy.translate; the identity path when no CRI version changes, which passes the
client's header blocks on as they are until a rule takes a call), so each request's `:path`
is known as its header block passes. The translator asks the book (cri_proxy.faults.book) once per new
request and hands a decision here:
- error: a trailers-only answer on the client's stream (cri_proxy.proxy.answers); the
  request never reaches the runtime.
- hang: nothing is forwarded and nothing answered; the client's deadline (its RST_STREAM,
  dropped like every later frame of the stream) ends it. A hang for N seconds is a delay.
- delay: the header block goes on at once, so that stream ids reach the runtime in order
  (a lower id opened after a higher one is a PROTOCOL_ERROR, RFC 9113 §5.1.1) and both
  HPACK tables see blocks in the order they were encoded; without END_STREAM, so the
  runtime cannot start the call. The stream's DATA is held, then goes on after the drawn
  delay (an empty DATA frame with END_STREAM when the request had no body). A gRPC server
  runs a unary handler only once the request message is complete, so the runtime sees the
  call that much later. The held bytes are the client's connection window until then, and
  are given back to the client if it resets the stream first.
- close: GOAWAY and the client's connection closed.
Each injected call's notes say `fault: RULE action`, recorded on the call like translation's.
A connection whose calls no rule could take (its client matches no rule, and no rule on pod
facts is loaded: `could_take`) is not read at all: it is a plain relay (`Unread`).

Rules on pod facts (namespace, pod, container, image) are decided once the request message
is read, with what the relay learned of ids (cri_proxy.proxy.bodyfaults); they use the same
actions from here.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import weakref
from collections.abc import Callable
from typing import Protocol

from cri_proxy.faults.book import CallFacts, Decision, FaultBook
from cri_proxy.faults.rules import FaultRulesError, load_rules, matches_glob
from cri_proxy.h2 import frames as h2
from cri_proxy.model.cri import CallPath
from cri_proxy.model.status import status_name
from cri_proxy.proxy import answers
from cri_proxy.proxy.connection import Connection
from cri_proxy.proxy.peer import process_name
from cri_proxy.proxy.seams import TranslatedRoute

log = logging.getLogger(__name__)

NO_ERROR = 0x0
# libuv times a timer from the loop's cached clock, in whole milliseconds: a call held for a
# drawn delay is held this much longer, so that it is never released short of it (the
# recording times it from a moment after the timer is armed, and would say a few ms less).
TIMER_SLACK = 0.005


def client_name(conn: Connection) -> str | None:
    """The client's process name for `client` rules; read here when the relay records nothing."""
    peer = conn.peer
    if peer.name is not None or peer.pid is None:
        return peer.name
    return process_name(peer.pid)


def could_take(book: FaultBook, client: str | None) -> bool:
    """Whether some rule could take a call of a connection of `client`, whatever its method and
    CRI version (a connection carries calls of either): False lets the connection be relayed
    without reading a header. Always True while a rule on pod facts is loaded: any connection's
    answers may teach what such a rule needs (cri_proxy.proxy.podfacts)."""
    return any(rule.needs_body or all(matches_glob(client, globs) for key, globs in rule.match if key == "client")
               for rule in book.rules)


class Unread:
    """The connections relayed without reading their headers, since no rule could take their
    calls (`could_take`). When the rules change so that one could, it is sent GOAWAY: its client
    opens its next calls on a new connection, whose headers are read from its first block on
    (an HPACK context cannot be picked up halfway through a connection)."""

    def __init__(self, book: FaultBook) -> None:
        self.book = book
        self.conns: weakref.WeakKeyDictionary[Connection, str | None] = weakref.WeakKeyDictionary()
        book.watch(self._rules_changed)

    def add(self, conn: Connection, client: str | None) -> None:
        log.debug("conn %d: no fault rule can take a call of %s: relayed unread", conn.id, client)
        self.conns[conn] = client

    def _rules_changed(self) -> None:
        for conn, client in list(self.conns.items()):
            if conn.closing:
                del self.conns[conn]
            elif could_take(self.book, client):
                del self.conns[conn]
                log.info("conn %d: the new fault rules may take calls of %s: GOAWAY, for its client to "
                         "reconnect and have its calls read", conn.id, client)
                conn.drain()


class RuleCache(Protocol):
    """What a connection made of the rules for its calls (proxy.translate's blocks that pass)."""

    def rules_changed(self) -> None: ...


class RuleCaches:
    """The connections that keep what they made of the rules: told when the rules change (one
    watcher of the book for all of them, which forgets a connection once it is gone)."""

    def __init__(self, book: FaultBook) -> None:
        self.holders: weakref.WeakSet[RuleCache] = weakref.WeakSet()
        book.watch(self._rules_changed)

    def add(self, holder: RuleCache) -> None:
        self.holders.add(holder)

    def _rules_changed(self) -> None:
        for holder in list(self.holders):
            holder.rules_changed()


def reload(book: FaultBook, path: pathlib.Path) -> bool:
    """SIGHUP: the file's rules replace the book's; a bad file keeps the old rules, one line a problem."""
    try:
        rules = load_rules(path)
    except FaultRulesError as exc:
        for line in exc.problems:
            log.error("fault rules not reloaded: %s", line)
        log.error("fault rules not reloaded: keeping the %d rule(s) loaded before", len(book.rules))
        return False
    book.replace(rules)
    log.info("fault rules reloaded from %s: %d rule(s)", path, len(rules))
    return True


class _Answering(Protocol):
    """What of the translator the faults use: its way of answering a call itself."""

    def _answer(self, stream_id: int, answer: bytes, notes: list[str]) -> None: ...


class _Held:
    __slots__ = ("frames", "data", "timer")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.data = 0  # DATA payload bytes held: the client's connection window they take
        self.timer: asyncio.TimerHandle | None = None


class ConnectionFaults:
    """The fault rules as one connection applies them (see the module's docstring)."""

    def __init__(self, route: TranslatedRoute, book: FaultBook, client: str | None,
                 on_release: Callable[[bytes], bool]) -> None:
        self.route = route
        self.on_release = on_release  # a released frame the translator takes (a body check); else it goes on
        self.conn: Connection = route._conn()
        self.book = book
        self.client = client
        self.held: dict[int, _Held] = {}
        self.notes: list[tuple[int, list[str]]] = []
        # Whether any rule can match a (method, api) on this connection (its client is fixed):
        # a call no rule matches then costs one dict look-up, not a walk of the rules.
        self.possible: dict[tuple[str, str | None], bool] = {}
        self.generation = book.generation

    def could_match(self, call: CallPath) -> bool:
        """Whether some rule could take `call` from its headers (FaultBook.could_match, kept per
        method and api: the client is the connection's) until the rules change."""
        book = self.book
        if self.generation != book.generation:
            self.possible.clear()
            self.generation = book.generation
        key = (call.method, call.api)
        possible = self.possible.get(key)
        if possible is None:
            possible = self.possible[key] = book.could_match(CallFacts(call.method, call.api, self.client))
        return possible

    def decide(self, call: CallPath) -> Decision | None:
        if not self.could_match(call):
            return None
        return self.book.decide(CallFacts(call.method, call.api, self.client))

    def apply(self, stream_id: int, decision: Decision, translator: _Answering) -> bool:
        """Inject a decision that is not a delay; False for a delay (the caller forwards the
        headers with `hold`)."""
        action = decision.action
        if action.kind == "error":
            note = f"fault: {decision.rule} error {_code_name(action.code)}"
            translator._answer(stream_id, answers.error(stream_id, action.code, action.message), [note])
            return True
        if action.kind == "hang" and action.hang_s is None:
            self.route.hijacked.add(stream_id)  # nothing of it goes on; the client's RST ends it
            self.notes.append((stream_id, [f"fault: {decision.rule} hang"]))
            return True
        if action.kind == "close":
            self.notes.append((stream_id, [f"fault: {decision.rule} close"]))
            self.route.hijacked.add(stream_id)
            # GOAWAY's last stream then names this one: the client fails the call (UNAVAILABLE)
            # instead of retrying it on a new connection as a call the server never saw.
            self.conn.open_streams.add(stream_id)
            self.conn.fail(NO_ERROR, f"fault rule {decision.rule!r}: closing the client's connection")
            return True
        return False

    def hold(self, stream_id: int, decision: Decision, end_stream: bool) -> float:
        """A delay (or a timed hang): the stream's DATA is held from now; the seconds to hold."""
        action = decision.action
        seconds = decision.delay_s if action.kind == "delay" else float(action.hang_s or 0.0)
        held = self.held[stream_id] = _Held()
        if end_stream:  # its headers go on without END_STREAM, which this frame gives later
            held.frames.append(h2.frame(h2.DATA, h2.FLAG_END_STREAM, stream_id, b""))
        held.timer = asyncio.get_running_loop().call_later(seconds + TIMER_SLACK, self._release, stream_id)
        self.notes.append((stream_id, [f"fault: {decision.rule} {action.kind} {seconds:.3f}s"]))
        return seconds

    def client_frame(self, frame: h2.Frame) -> bool:
        """A frame of a held stream: True when it was taken (held, or dropped with its stream)."""
        held = self.held.get(frame.stream_id)
        if held is None:
            return False
        if frame.type == h2.RST_STREAM:  # the client gave up: the held DATA never goes on
            del self.held[frame.stream_id]
            if held.timer is not None:
                held.timer.cancel()
            if held.data:
                self.conn.inject_to_client(h2.window_update_frame(0, held.data))
            return False  # the runtime has the headers: it gets the RST_STREAM too
        held.frames.append(frame.raw or b"")
        if frame.type == h2.DATA:
            held.data += frame.length
        return True

    def _release(self, stream_id: int) -> None:
        held = self.held.pop(stream_id, None)
        if held is None or self.conn.closing or self.conn.upstream is None:
            return
        for raw in held.frames:
            if not self.on_release(raw):
                self.route.out(raw)


def _code_name(code: int) -> str:
    return status_name(code) or str(code)

