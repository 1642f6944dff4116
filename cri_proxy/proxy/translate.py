"""CRI v1 <-> v1alpha2 translation in the relay, by rewriting request headers.

For every RPC both versions share, the messages are the same bytes in either version, so
translating a call is giving it a new `:path`. A translating connection stays a relay: the
upstream's frames reach the client untouched; of the client's, each request header block is
decoded with the client's HPACK context and encoded again towards the runtime with the
proxy's own encoder (cri_proxy.h2.hpack_encoder), the path rewritten, and every later block
of the connection is re-encoded too (the two ends' tables differ from then on). With --faults
a connection that needs no translation comes here too (cri_proxy.proxy.reading): its blocks
go on as sent, read only for the rules, until the proxy takes a call out of the stream.
A block re-encoded leaving both tables as they were is kept with what it became
(`rewritten`, emptied whenever a table, a limit or the rules change): sent again as it
became, its call decided again, or, with nothing to decide, swapped in by the request relay
itself (cri_proxy.proxy.requests).

Some calls the proxy answers itself (cri_proxy.proxy.answering). A v1 request that can carry
a v1-only or retyped field (cri_proxy.proxy.v1only) is checked as the bridge checks it
(bodycheck, heldbody): its DATA goes on as it comes but the frame that completes the message,
held until checked; flow control needs no credit of the relay's own (the held frame goes on,
or becomes RST_STREAM and the proxy's answer, its window given back; an answer is counted
against the client's next WINDOW_UPDATE). A connection that may ask for GetContainerEvents
emulation goes to the bridge (cri_proxy.bridge.options.relay_translation decides).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from cri_proxy.h2 import frames as h2
from cri_proxy.h2.constants import FRAME_HEADER
from cri_proxy.h2.hpack_decoder import Decoder, Field
from cri_proxy.h2.hpack_encoder import Encoder, latin1
from cri_proxy.h2.request_path import first_request_path
from cri_proxy.model.cri import CallPath, method_info, parse_path
from cri_proxy.proxy import bodycheck, faultwire, heldbody
from cri_proxy.proxy.bodyfaults import BodyFaults
from cri_proxy.proxy.ends import End
from cri_proxy.proxy.faultwire import ConnectionFaults
from cri_proxy.proxy.headerblock import MAX_HEADER_LIST
from cri_proxy.proxy.policy import TranslationPolicy
from cri_proxy.proxy.reading import Reading, path_of
from cri_proxy.proxy.requests import RequestRelay
from cri_proxy.proxy.responses import ResponseRelay
from cri_proxy.proxy.seams import TranslatedRoute

log = logging.getLogger(__name__)

MAX_FRAME: Final = 16384  # SETTINGS_MAX_FRAME_SIZE's floor: every peer takes frames this large
_FRAME_HEAD: Final = FRAME_HEADER.pack


def start(route: TranslatedRoute, policy: TranslationPolicy, fragment: bytes) -> Translator | None:
    """A translator for the connection whose first request block is `fragment`, or None."""
    path = first_request_path(fragment, route.table_size) or ""
    api = policy.upstream_api(path)
    client_api = parse_path(path).api
    if client_api is None:
        return None
    conn = route._conn()
    client = None if policy.faults is None else faultwire.client_name(conn)  # `client` rules match on it
    if api is None or api == client_api:
        if policy.faults is None or route.up.destination(path) == "bridge":
            return None
        if not faultwire.could_take(policy.faults, client):
            if policy.unread is not None:
                policy.unread.add(conn, client)
            return None  # a plain relay, until the rules change (faultwire.Unread)
        api = client_api  # the identity path: no version changes, but every call's path is read
    route.service = route.up.service_of(path)
    route.replay_and_move(route.service)
    route.replay = None
    return Translator(route, policy, client_api, api, client)


class Translator(Reading):
    """One connection's translation (see the module's docstring); driven by its route."""

    def __init__(self, route: TranslatedRoute, policy: TranslationPolicy, client_api: str, upstream_api: str,
                 client: str | None) -> None:
        self.route = route
        self.conn = route._conn()
        self.policy = policy
        self.client_api, self.upstream_api = client_api, upstream_api
        self.decoder = Decoder(MAX_HEADER_LIST, latin1)
        self.decoder.max_allowed_table_size = route.table_size
        self.encoder = Encoder()
        self.encoder.set_max_size(min(route.table_size, route.limit.latest))  # a lower one may be in flight
        self.last_stream = 0
        # Until the proxy takes a request out of the stream, a connection that is not translated
        # passes the client's header blocks on as they are, read only for the fault rules.
        self.rewriting = client_api != upstream_api
        # A warm client sends the same block for the same call, and while neither table moves it
        # becomes the same bytes towards the runtime: kept by the client's bytes, neither decoded
        # nor encoded again. With the runtime-side bytes goes the call, to be decided again, or
        # None when there is nothing to decide (no fault rule could take or read the call, no body
        # check) and the block fits one frame: the request relay swaps those in itself
        # (cri_proxy.proxy.requests). Emptied at once whenever either table moves, the runtime's
        # SETTINGS_HEADER_TABLE_SIZE arrives, the client's limit changes or the rules change
        # (`_forget`). `swapping`: some of them the relay may swap in (else it does not look).
        self.rewritten: dict[bytes, tuple[bytes, CallPath | None]] = {}
        self.swapping = False
        # On the identity path (cri_proxy.proxy.reading) the same cache keeps each block as itself.
        if policy.caches is not None:
            policy.caches.add(self)
        self.checking: dict[int, bodycheck.Pending] = {}
        self.owed = 0  # DATA bytes the proxy sent the client, to keep from the runtime's credit
        self.notes: list[tuple[int, list[str]]] = []  # for the tap, once it has seen the request
        self.faults = None if policy.faults is None else ConnectionFaults(
            route, policy.faults, client, self._released)
        self.held = {} if self.faults is None else self.faults.held
        self.bodies = None if self.faults is None else BodyFaults(
            self.faults.book, policy.pod_facts, self.faults.client)  # rules on pods: which messages are read
        if client_api == upstream_api:
            log.debug("conn %d: CRI %s, headers read for fault rules", self.conn.id, client_api)
            return
        if (client_api, upstream_api) not in policy.announced:
            policy.announced.add((client_api, upstream_api))
            log.info("a client needs CRI translation: translating CRI %s -> %s in the relay", client_api, upstream_api)
        log.debug("conn %d: translating CRI %s -> %s in the relay", self.conn.id, client_api, upstream_api)
        if self.conn.tap is not None:
            self.conn.tap.call_noted(0, upstream_api, [f"translated {client_api} -> {upstream_api}"])

    # Client to upstream ------------------------------------------------------------------
    def block(self, stream_id: int, end_stream: bool, fragment: bytes) -> bool:
        """A whole request header block: True when it may go on as the client sent it (the caller
        forwards the client's frames); False when what replaces it, if anything, was sent here."""
        if not self.rewriting:
            return self._read(stream_id, end_stream, fragment)
        made = self.rewritten.get(fragment) if stream_id > self.last_stream else None
        if made is not None:  # a new call's block as it was rewritten before
            block, call = made
            # unless a rule on pod facts is to read its message first (decoded, then, in _rewrite)
            if call is None or self.bodies is None or not self.bodies.wants(stream_id, call):
                self.last_stream = stream_id  # decoding it would not move the decoder's table either
                if call is None or not self._fault(stream_id, call, block, end_stream):
                    self._send(stream_id, block, end_stream)
                return False
        state = (self.decoder.generation, self.encoder.generation)
        self._rewrite(stream_id, end_stream, fragment, state)
        if self.rewritten and (self.decoder.generation, self.encoder.generation) != state:
            self._forget()  # made against tables as they were
        return False

    def _rewrite(self, stream_id: int, end_stream: bool, fragment: bytes, state: tuple[int, tuple[int, int, int]]
                 ) -> None:
        """`block` for a block not kept: decoded, then forwarded, answered or translated; `state`,
        both tables' generations before it."""
        headers = self.decoder.decode(fragment)  # HPACKDecodingError: the caller fails the connection
        if stream_id <= self.last_stream:  # trailers of a call already under way
            if stream_id not in self.route.hijacked and (self.faults is None or stream_id not in self.faults.held):
                self._forward(stream_id, headers, end_stream)
            return
        self.last_stream = stream_id
        path = path_of(headers)
        call = parse_path(path)
        if call.api != self.client_api:  # not CRI, or a CRI call in the connection's other version
            self._untranslated(stream_id, end_stream, headers, call)
            return
        service = self.route.up.service_of(path)
        if service != self.route.service:
            self._misrouted(stream_id, path, service)
            return
        target = call.in_api(self.upstream_api)
        if self.upstream_api != self.client_api and method_info(target) is None:
            self._lacking(stream_id, call)
            return
        self._translate(stream_id, end_stream, fragment, [(name, target if name == ":path" else value)
                                                         for name, value in headers], call, state)

    def _untranslated(self, stream_id: int, end_stream: bool, headers: list[Field], call: CallPath) -> None:
        """A call the connection does not translate: forwarded as it came, unless a rule takes it."""
        faults = self.faults
        decision = None if faults is None or call.api is None else faults.decide(call)
        if decision is not None and faults is not None:
            if faults.apply(stream_id, decision, self):
                return
            faults.hold(stream_id, decision, end_stream)
            end_stream = False
        self._forward(stream_id, headers, end_stream)

    def _translate(self, stream_id: int, end_stream: bool, fragment: bytes, headers: list[Field], call: CallPath,
                   state: tuple[int, tuple[int, int, int]]) -> None:
        """A call in the client's version, `headers` its fields in the runtime's: decided (or its
        message read first), checked, encoded and sent; kept when that left both tables as they were."""
        faults = self.faults
        # a rule on pod facts: decided once the message is read (cri_proxy.proxy.bodyfaults)
        reading = self.bodies is not None and not end_stream and self.bodies.wants(stream_id, call)
        decision = None if faults is None or reading else faults.decide(call)
        if decision is not None and faults is not None and faults.apply(stream_id, decision, self):
            return  # answered, hung or closed: the runtime never sees the call
        checked = self.upstream_api == "v1alpha2" != self.client_api and bodycheck.checked(call.path)
        if (checked or reading) and not end_stream:
            self.checking[stream_id] = bodycheck.Pending(call.path, checked, call if reading else None)
        block = self.encoder.encode(headers)
        if not checked and not reading and (self.decoder.generation, self.encoder.generation) == state:
            self._keep(fragment, block, call)
        if decision is not None and faults is not None:
            faults.hold(stream_id, decision, end_stream)
            end_stream = False
        self._send(stream_id, block, end_stream)

    def _keep(self, fragment: bytes, block: bytes, call: CallPath) -> None:
        """`fragment` became `block` leaving both tables as they were: kept while they stay so,
        with its call, or None for the request relay to swap it in alone when no fault rule could
        take the call (nor read its message) and it fits one frame."""
        if len(self.rewritten) >= 64:
            return
        faults = self.faults
        alone = (faults is None or not faults.book.needs_body and not faults.could_match(call)) \
            and len(fragment) <= 1024 and len(block) <= MAX_FRAME
        self.rewritten[fragment] = (block, None if alone else call)
        self.swapping = self.swapping or alone

    def _forget(self) -> None:
        """What blocks were rewritten to stands no longer: a table moved, a limit or the rules changed."""
        self.rewritten.clear()
        self.swapping = False

    def rules_changed(self) -> None:
        """The fault rules changed (faultwire.RuleCaches): blocks are decided again."""
        self._forget()

    def send_as_sent(self, stream_id: int, end_stream: bool, fragment: bytes) -> None:
        """Send on a block that `block` let through, when the client's frames of it were not kept."""
        self._send(stream_id, fragment, end_stream)

    def _released(self, raw: bytes) -> bool:
        """A frame held by a delay, going on now: True when the translator took it (a body check)."""
        kind, flags, sid = raw[3], raw[4], int.from_bytes(raw[5:9], "big") & 0x7FFFFFFF
        return self.client_frame(h2.Frame(kind, flags, sid, len(raw) - 9, raw[9:], raw))

    def _forward(self, stream_id: int, headers: list[Field], end_stream: bool) -> None:
        self._send(stream_id, self.encoder.encode(headers), end_stream)

    def _send(self, stream_id: int, block: bytes, end_stream: bool) -> None:
        flags = h2.FLAG_END_STREAM if end_stream else 0
        size = len(block)
        if size <= MAX_FRAME:  # every request's, nearly: one frame, its header packed at once
            self.conn.open_streams.add(stream_id)
            self.route.out(_FRAME_HEAD(size >> 16, size & 0xFFFF, h2.HEADERS, flags | h2.FLAG_END_HEADERS,
                                       stream_id) + block)
            return
        pieces = [block[i:i + MAX_FRAME] for i in range(0, len(block), MAX_FRAME)]
        frames = [h2.frame(h2.HEADERS, flags, stream_id, pieces[0])]
        frames += [h2.frame(h2.CONTINUATION, 0, stream_id, piece) for piece in pieces[1:-1]]
        frames.append(h2.frame(h2.CONTINUATION, h2.FLAG_END_HEADERS, stream_id, pieces[-1]))
        self.route.forward_request(stream_id, frames)

    def client_frame(self, frame: h2.Frame) -> bool:
        """A client frame other than a header block; True when the translator took it."""
        if self.faults is not None and self.faults.held and self.faults.client_frame(frame):
            return True
        if frame.type == h2.DATA and frame.stream_id in self.checking:
            return heldbody.data(self, frame, self.policy.strict)
        if frame.type == h2.WINDOW_UPDATE and frame.stream_id == 0 and self.owed:
            raw = frame.raw or b""
            increment = int.from_bytes(raw[9:13], "big") & 0x7FFFFFFF
            kept = min(increment, self.owed)
            self.owed -= kept
            if increment > kept:
                self.route.out(h2.window_update_frame(0, increment - kept))
            return True
        if frame.type == h2.RST_STREAM:
            self.checking.pop(frame.stream_id, None)
        return False

    def requests(self) -> Callable[[bytes], None]:
        """The client's byte handler once the route has nothing more to decide there
        (cri_proxy.proxy.requests)."""
        return RequestRelay(self.route, self).from_client

    # Upstream to client ------------------------------------------------------------------
    def responses(self) -> tuple[Callable[[End, bytes], None], Callable[[], bool]]:
        """The byte handler and injection test for the runtime's side, once the route has
        nothing more of its own to hold back there (cri_proxy.proxy.responses)."""
        # Once relaying chunks no client ACK is followed: only our encoder shrinks with the runtime (the
        # decoder stays lenient rather than refuse a block the client sent before it saw the SETTINGS).
        relay = ResponseRelay(self.conn, self.route.hijacked, self.runtime_table, self.bodies)
        return relay.from_upstream, relay.can_inject

    def client_table_allowed(self, size: int) -> None:
        """The client acknowledged the runtime's table size: its encoder obeys from its next block."""
        self.decoder.max_allowed_table_size = size
        self._forget()  # the client's next block must resize its table: decoded, not looked up

    def runtime_table(self, size: int) -> None:
        """The runtime's SETTINGS_HEADER_TABLE_SIZE as it passes: our encoder towards it shrinks
        at once (an encoder may always use less than allowed)."""
        self.encoder.set_max_size(size)
        self._forget()  # the next block announces the size: encoded, not looked up
