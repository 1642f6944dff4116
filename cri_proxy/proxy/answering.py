"""The calls a translating connection's relay answers itself, never forwarding them: a method
the runtime's version lacks (UNIMPLEMENTED, as the bridge says it; RuntimeConfig from
--cgroup-driver), a call for the other service on a connection that has its own socket for
each, and what fault rules answer (proxy.faultwire). The frames are cri_proxy.proxy.answers';
this is the translator's part that writes them on the client's stream, keeps the stream's
runtime frames away (`hijacked`), counts the DATA against the client's next window credit
(`owed`), and gives the tap the notes of what it did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cri_proxy.model.cri import CallPath
from cri_proxy.model.status import StatusCode
from cri_proxy.proxy import answers
from cri_proxy.proxy.connection import Connection
from cri_proxy.proxy.faultwire import ConnectionFaults
from cri_proxy.proxy.policy import TranslationPolicy
from cri_proxy.proxy.seams import TranslatedRoute

log = logging.getLogger(__name__)


class Answering:
    """The answering part of a translator (proxy.translate.Translator sets what it names)."""

    route: TranslatedRoute
    conn: Connection
    policy: TranslationPolicy
    upstream_api: str
    faults: ConnectionFaults | None
    owed: int  # DATA bytes the proxy sent the client, to keep from the runtime's credit
    notes: list[tuple[int, list[str]]]  # for the tap, once it has seen the request
    _send: Callable[[int, bytes, bool], None]  # a request block towards the runtime

    def _lacking(self, stream_id: int, call: CallPath) -> None:
        """A method the runtime's version lacks: answered as the bridge answers it."""
        answer, notes = answers.lacking(stream_id, call.method, self.upstream_api, self.policy.cgroup_driver)
        self._answer(stream_id, answer, notes)

    def _misrouted(self, stream_id: int, path: str, service: str) -> None:
        up, here = self.route.up, self.route.service or "runtime"
        message = (f"cri-proxy: {path} cannot be routed on this connection: it carries {here} calls to "
                   f"unix://{up.path_of(here)}, and {service} calls go to unix://{up.path_of(service)}; "
                   "use a separate connection for each")
        log.warning("conn %d: %s", self.conn.id, message)
        self._answer(stream_id, answers.error(stream_id, StatusCode.UNIMPLEMENTED, message), [])

    def _answer(self, stream_id: int, answer: bytes, notes: list[str]) -> None:
        """Write the proxy's answer on the client's stream; the request never reaches the runtime."""
        self.route.hijacked.add(stream_id)
        self.owed += answers.data_length(answer)
        self.conn.inject_to_client(answer)
        if notes:
            self.notes.append((stream_id, notes))
        self.route.answers.append(answer)  # shown to the tap after the request and its notes

    def show_tap(self) -> None:
        """The tap has seen the client's frames so far: tell it what translation did to them."""
        notes, self.notes = self.notes, []
        if self.faults is not None and self.faults.notes:
            notes += self.faults.notes
            self.faults.notes = []
        tap = self.conn.tap
        if tap is not None:
            for stream_id, texts in notes:
                tap.call_noted(stream_id, None, texts)

    def _fault(self, stream_id: int, call: CallPath, block: bytes, end_stream: bool) -> bool:
        """A reused block's call, decided: True when the fault rules took it (block sent or not)."""
        faults = self.faults
        decision = None if faults is None else faults.decide(call)
        if faults is None or decision is None:
            return False
        if not faults.apply(stream_id, decision, self):
            faults.hold(stream_id, decision, end_stream)
            self._send(stream_id, block, False)
        return True
