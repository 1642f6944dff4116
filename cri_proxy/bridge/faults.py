"""Fault rules on the calls the bridge serves, applied as the relay applies them on its own.

A connection that may ask for GetContainerEvents emulated (`--emulate-events` in front of a
runtime that lacks it) is served by the bridge, which runs each of its calls itself, so its
calls are not seen by the relay's fault rules (cri_proxy.proxy.faultwire) but checked here,
against the same book, with the same facts (method, client, CRI version, and the pod facts),
and noted on the call the same way (`fault: RULE ACTION`, which the recorder's metrics count in
cri_proxy_faults_injected_total). What each action does to a bridged call:
- error: answered with the rule's status and message; nothing is forwarded.
- delay (and a hang for N seconds, which is a delay): forwarded after the drawn delay.
- hang until the deadline: neither forwarded nor answered; the client's deadline (grpc
  cancels the handler) or its cancel ends the call.
- close: the relay fails the client's connection (GOAWAY naming the call's stream, as the
  relay's close does), found from the bridged call's peer (cri_proxy.proxy.peer.bridge_address).
A rule on pod facts reads the request message, which the bridge has whole, and what the proxy
learned of the ids it names; the answers that teach ids (cri_proxy.proxy.podfacts) teach the
proxy's one table from here, since a bridged connection's answers never pass the relay's reader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc

from cri_proxy.bridge.recording import Caller, CallLog
from cri_proxy.faults.book import CallFacts, Decision, FaultBook
from cri_proxy.model.protowire import WireError
from cri_proxy.model.status import status_name
from cri_proxy.proxy import podfacts
from cri_proxy.proxy.faultwire import TIMER_SLACK
from cri_proxy.proxy.peer import process_name

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def client_name(caller: Caller | None) -> str | None:
    """The process name `client` rules match on, as the relay reads it (faultwire.client_name)."""
    if caller is None or caller.name is not None or caller.pid is None:
        return None if caller is None else caller.name
    return process_name(caller.pid)


@dataclass
class BridgeFaults:
    """The proxy's fault rules and pod facts, as the bridge's calls use them."""

    book: FaultBook
    table: podfacts.FactTable
    close: Callable[[str, str], bool]  # (grpc peer, reason): fail that relayed connection; False if none
    _generation: int = field(default=-1, init=False)
    _pods: bool = field(default=False, init=False)  # a loaded rule needs pod facts

    def reading(self) -> bool:
        """Whether requests and answers are read for pod facts (only while a rule needs them)."""
        if self._generation != self.book.generation:
            self._generation = self.book.generation
            self._pods = any(rule.needs_body for rule in self.book.rules)
        return self._pods

    def decide(self, method: str, api: str | None, client: str | None,
               request: bytes | None) -> tuple[Decision | None, podfacts.Facts]:
        """The rule that takes this call (None: none), and the request's facts, for `learn`."""
        facts = CallFacts(method, api, client)
        found: podfacts.Facts = {}
        if request is not None and self.reading():
            undecided = podfacts.carries_facts(method) and self.book.undecided(facts)
            if undecided or podfacts.learns_with_request(method):
                found = podfacts.readable_facts(method, request)
            if undecided:
                facts = podfacts.with_pod(facts, self.table.resolve(found))
        return (self.book.decide(facts) if self.book else None), found

    def learn(self, method: str, facts: podfacts.Facts, reply: bytes) -> None:
        """What the runtime's answer to a forwarded call teaches of ids (podfacts.FactTable.answer)."""
        if podfacts.learns(method) and self.reading():
            try:
                self.table.answer(method, facts, reply)
            except WireError:
                pass  # the runtime's answer is not protobuf: the client will say so, the table learns nothing

    async def apply(self, decision: Decision, call: CallLog, context: Context) -> None:
        """Inject `decision` on a bridged call: returns once the call may be forwarded (after a
        delay); for any other action, ends the call (grpc's abort, or the handler cancelled)."""
        action = decision.action
        if action.kind == "error":
            call.note(f"fault: {decision.rule} error {status_name(action.code) or action.code}")
            await _abort(call, context, _CODES.get(action.code, grpc.StatusCode.UNKNOWN), action.message)
        if action.kind == "delay" or action.hang_s is not None:
            seconds = decision.delay_s if action.kind == "delay" else float(action.hang_s or 0.0)
            call.note(f"fault: {decision.rule} {action.kind} {seconds:.3f}s")
            await asyncio.sleep(seconds + TIMER_SLACK)
            return
        if action.kind == "hang":
            call.note(f"fault: {decision.rule} hang")
            await asyncio.get_running_loop().create_future()  # never set: grpc cancels the handler
        call.note(f"fault: {decision.rule} close")
        reason = f"fault rule {decision.rule!r}: closing the client's connection"
        if not self.close(context.peer(), reason):
            log.warning("bridged call %d: %s, but it came on no relayed connection: answering UNAVAILABLE",
                        call.id, reason)
        await _abort(call, context, grpc.StatusCode.UNAVAILABLE, reason)  # what a closed connection fails with


async def _abort(call: CallLog, context: Context, code: grpc.StatusCode, details: str) -> NoReturn:
    call.status(code, details)
    await context.abort(code, details)
    raise AssertionError("abort returned")  # abort always raises; this satisfies NoReturn
