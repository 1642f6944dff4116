"""Fault rules on pod facts, for one connection: which requests are read, and which answers.

Most fault rules are decided from a request's headers (cri_proxy.proxy.faultwire). A rule on
a pod's namespace or name, a container's name or an image needs the request message, or what
the relay learned of the ids it names (cri_proxy.proxy.podfacts). Only while such a rule is
loaded, and only for the methods whose request names a pod, container or image (and whose
decision a rule could still turn on them), is the request held as a body check is
(cri_proxy.proxy.translate): its DATA goes on as it comes except the frame that completes the
message, which waits for `settle` to read the facts and decide. The runtime has the headers
by then but not the whole message, so a unary handler has not started:
- nothing due: the frame goes on;
- a delay (or a timed hang): the frame and what follows are held as faultwire holds them;
- an error, a hang until the deadline, a close: RST_STREAM towards the runtime, the dropped
  frame's connection window given back to the client, then the action as faultwire applies it.
The answers of the few methods that teach the table (RunPodSandbox, CreateContainer, the
relists, PodSandboxStatus, ContainerStatus, Remove*) are read on their way to the client (cri_proxy.proxy.responses hands their
DATA here); the bytes go on untouched. With no such rule loaded nothing is read at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol

from cri_proxy.faults.book import CallFacts, FaultBook
from cri_proxy.h2 import frames as h2
from cri_proxy.model.cri import CallPath
from cri_proxy.model.protowire import WireError
from cri_proxy.proxy.connection import Connection
from cri_proxy.proxy.faultwire import ConnectionFaults
from cri_proxy.proxy.podfacts import (
    Facts,
    FactTable,
    carries_facts,
    learns,
    learns_with_request,
    readable_facts,
    with_pod,
)
from cri_proxy.proxy.seams import TranslatedRoute

MAX_READ: Final = 64 << 20  # an answer larger than this teaches nothing (the next relist will)
MAX_WATCHED: Final = 1024  # answers being read on one connection; the oldest is given up past it
_PASS, _WATCH, _READ = 0, 1, 2  # what becomes of a call of a method: nothing read, its answer, its request


class _Translator(Protocol):
    """What of the translator a fault decided on the body uses."""

    route: TranslatedRoute
    conn: Connection

    def _answer(self, stream_id: int, answer: bytes, notes: list[str]) -> None: ...


@dataclass(slots=True)
class _Reading:
    method: str
    facts: Facts  # the request's, merged into what its answer says
    buffer: bytearray = field(default_factory=bytearray)


class BodyFaults:
    """One connection's fault rules on pod facts (see the module's docstring)."""

    def __init__(self, book: FaultBook, table: FactTable, client: str | None) -> None:
        self.book, self.table, self.client = book, table, client
        self.generation = -1
        self.active = False  # a loaded rule needs body facts
        self.wanted: dict[tuple[str, str | None], int] = {}
        self.replies: dict[int, _Reading] = {}  # streams whose answer is read (the response relay asks)

    def wants(self, stream_id: int, call: CallPath) -> bool:
        """Whether this request's message is read before its fault decision (one look-up when not).
        A relist's answer is read whatever its request says: its stream is watched from here."""
        if self.generation != self.book.generation:
            self.generation = self.book.generation
            self.active = any(rule.needs_body for rule in self.book.rules)
            self.wanted.clear()
        if not self.active:
            return False
        key = (call.method, call.api)
        plan = self.wanted.get(key)
        if plan is None:
            method = call.method
            read = learns_with_request(method) or carries_facts(method) and self.book.undecided(
                CallFacts(method, call.api, self.client))
            plan = self.wanted[key] = _READ if read else _WATCH if learns(method) else _PASS
        if plan == _WATCH:
            self.watch(stream_id, call.method, {})  # an answer the proxy gives itself leaves it to MAX_WATCHED
        return plan == _READ

    def settle(self, faults: ConnectionFaults, translator: _Translator, frame: h2.Frame, call: CallPath,
               message: bytes | None) -> bool:
        """The request's message is complete in `frame`: decide; True when the frame was taken."""
        facts = self.table.resolve(readable_facts(call.method, message))
        decision = self.book.decide(with_pod(CallFacts(call.method, call.api, self.client), facts))
        action = None if decision is None else decision.action
        sid = frame.stream_id
        if decision is None or action is not None and (action.kind == "delay" or action.hang_s is not None):
            if learns(call.method):
                self.watch(sid, call.method, facts)  # again for a relist: now with its request's facts
            if decision is None:
                return False
            faults.hold(sid, decision, False)
            held = faults.held[sid]  # the frame completing the message is the first held
            held.frames.append(frame.raw or b"")
            held.data += frame.length
            return True
        route, conn = translator.route, translator.conn
        route.out(h2.rst_stream_frame(sid))  # the runtime has the headers and all but this frame
        conn.open_streams.discard(sid)
        route.hijacked.add(sid)
        if frame.length:
            conn.inject_to_client(h2.window_update_frame(0, frame.length))
        faults.apply(sid, decision, translator)
        return True

    def watch(self, stream_id: int, method: str, facts: Facts) -> None:
        if len(self.replies) >= MAX_WATCHED:
            del self.replies[next(iter(self.replies))]
        self.replies[stream_id] = _Reading(method, facts)

    def reply(self, stream_id: int, flags: int, payload: bytes | bytearray) -> None:
        """A whole DATA frame of an answer being read (padding included, as on the wire)."""
        reading = self.replies.get(stream_id)
        if reading is None:
            return
        view = memoryview(payload)
        if flags & h2.FLAG_PADDED:
            view = view[1:len(view) - payload[0]] if payload else view
        data: memoryview | bytearray = view  # one frame with the whole message is not copied to gather it
        if reading.buffer:
            reading.buffer += view
            data = reading.buffer
        size = int.from_bytes(data[1:5], "big") if len(data) >= 5 else -1
        if size < 0 or len(data) < 5 + size and not data[0] and size <= MAX_READ:
            if data is view:
                reading.buffer += view  # the message goes on in the next frames
            return
        del self.replies[stream_id]
        if data[0] or size > MAX_READ:
            return  # compressed, or too large: nothing learned
        try:
            self.table.answer(reading.method, reading.facts, bytes(memoryview(data)[5:5 + size]))
        except WireError:
            pass  # the runtime's answer is not protobuf: the client will say so, the table learns nothing

    def ended(self, stream_id: int) -> None:
        """The answer's stream ended (trailers, END_STREAM, RST_STREAM) before a message was read."""
        self.replies.pop(stream_id, None)

