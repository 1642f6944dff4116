"""The identity path of the relay's translator (proxy.translate): a connection read only for
fault rules, its blocks going on as the client sent them.

With --faults, a connection that needs no translation is still read: each request block is
decoded with the client's context only to learn the call for the rules, and the runtime's
table keeps following the client's. A block that decoded without moving the client's table is
kept in the translator's one cache (`rewritten`, as itself) with its call, or None when no rule
can take (or read) the call: the request relay then passes it with the chunk, unread. The
cache is emptied in one place (`Translator._forget`) whenever the table, its limit or the
rules change. The first block the runtime will not see as the client sent it (an answer, a
hang, a close or a dropped trailer; a delay holds only DATA, so it does not count) switches the
connection to re-encoding: the encoder's first block empties the runtime's table (a size update
to 0, then back), and the two tables are in step again from there."""

from __future__ import annotations

import logging

from cri_proxy.h2.hpack_decoder import Decoder, Field
from cri_proxy.h2.hpack_encoder import Encoder
from cri_proxy.model.cri import CallPath, parse_path
from cri_proxy.proxy import bodycheck
from cri_proxy.proxy.answering import Answering
from cri_proxy.proxy.bodyfaults import BodyFaults

log = logging.getLogger(__name__)


class Reading(Answering):
    """The identity path's part of a translator (proxy.translate.Translator sets what it names)."""

    decoder: Decoder
    encoder: Encoder
    bodies: BodyFaults | None
    client_api: str
    rewriting: bool
    last_stream: int
    checking: dict[int, bodycheck.Pending]
    rewritten: dict[bytes, tuple[bytes, CallPath | None]]  # here each block as itself (Translator)
    swapping: bool

    def _forget(self) -> None: ...

    def _read(self, stream_id: int, end_stream: bool, fragment: bytes) -> bool:
        """A block on a connection whose requests still reach the runtime as the client sent
        them: decoded only for the fault rules, and passed on unless a rule takes its call."""
        decoder, faults = self.decoder, self.faults
        made = self.rewritten.get(fragment) if stream_id > self.last_stream else None
        if made is not None:  # decoding it would leave the client's table as it is
            call = made[1]
            steady = True
            if call is None:  # nothing to decide: as the request relay passes it alone
                self.last_stream = stream_id
                self.conn.open_streams.add(stream_id)
                return True
        else:
            generation = decoder.generation
            call = parse_path(path_of(decoder.decode(fragment)))  # HPACKDecodingError: the caller fails the connection
            steady = decoder.generation == generation
            if not steady:
                if self.rewritten:
                    self._forget()  # decoded against the table as it was: not as it is now
            elif stream_id > self.last_stream and len(self.rewritten) < 64:
                self.rewritten[fragment] = (fragment, call)
        if stream_id <= self.last_stream:  # trailers of a call already under way
            if stream_id in self.route.hijacked or faults is not None and stream_id in faults.held:
                self._diverge()  # the runtime never sees this block
                return False
            return True
        self.last_stream = stream_id
        if call.api is None:
            return self._pass(stream_id, fragment if steady else None)  # not CRI
        if call.api == self.client_api:
            service = self.route.up.service_of(call.path)
            if service != self.route.service:
                self._diverge()
                self._misrouted(stream_id, call.path, service)
                return False
            if self.bodies is not None and not end_stream and self.bodies.wants(stream_id, call):
                # a rule on pod facts: decided once the message is read (cri_proxy.proxy.bodyfaults);
                # a refusal then resets the stream the runtime has the headers of, as sent
                self.checking[stream_id] = bodycheck.Pending(call.path, False, call)
                return self._pass(stream_id)
        if faults is None or not faults.could_match(call):  # the other CRI version's calls too
            nothing = steady and (faults is None or not faults.book.needs_body)
            return self._pass(stream_id, fragment if nothing else None)
        decision = faults.decide(call)
        if decision is None:
            return self._pass(stream_id)
        if faults.apply(stream_id, decision, self):
            self._diverge()  # answered, hung or closed: the runtime never sees the block
            return False
        faults.hold(stream_id, decision, end_stream)
        self._send(stream_id, fragment, False)  # the same block, its END_STREAM given with the held DATA
        return False

    def _pass(self, stream_id: int, alone: bytes | None = None) -> bool:
        """The block goes on as it is; `alone`, when given, will again with nothing to decide."""
        self.conn.open_streams.add(stream_id)
        if alone is not None and len(alone) <= 1024 and alone in self.rewritten:
            self.rewritten[alone] = (alone, None)
            self.swapping = True
        return True

    def _diverge(self) -> None:
        """The runtime's HPACK table stops following the client's: from the next block on, every
        block is re-encoded. The proxy's encoder starts empty, so its first block empties the
        runtime's table too (a size update to 0, then back: RFC 7541 §4.2, §6.3)."""
        if self.rewriting:
            return
        self.rewriting = True
        self._forget()  # what was kept stands for the blocks as sent, not as re-encoded
        log.debug("conn %d: a request was taken out of the stream: its request headers are re-encoded "
                  "from here on", self.conn.id)
        self.encoder.empty_peer()


def path_of(headers: list[Field]) -> str:
    """A request's `:path` among its fields, or ""."""
    for name, value in headers:
        if name == ":path":
            return value
    return ""
