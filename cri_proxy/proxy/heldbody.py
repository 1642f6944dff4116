"""A request whose first message is read before it goes on: its DATA gathered as it passes.

Two things read a request's message on a translating connection (cri_proxy.proxy.translate):
the v1-only check of a v1 request bound for a v1alpha2 runtime (cri_proxy.proxy.bodycheck),
and a fault rule on pod facts (cri_proxy.proxy.bodyfaults). Either way the request's DATA is
forwarded as it comes except the frame that completes the message, held until it is judged:
it then goes on, or the fault rules hold it, or the request is refused, the runtime (which
has the headers and all but that frame) getting RST_STREAM and the client the proxy's
answer, with the connection window of the dropped bytes given back.
"""

from __future__ import annotations

import logging
from typing import Protocol

from cri_proxy.h2 import frames as h2
from cri_proxy.model.cri import CallPath
from cri_proxy.proxy import answers, bodycheck
from cri_proxy.proxy.bodyfaults import BodyFaults
from cri_proxy.proxy.connection import Connection
from cri_proxy.proxy.faultwire import ConnectionFaults
from cri_proxy.proxy.seams import TranslatedRoute

log = logging.getLogger(__name__)


class Reader(Protocol):
    """What of the translator reading a request's message uses."""

    route: TranslatedRoute
    conn: Connection
    checking: dict[int, bodycheck.Pending]  # streams whose message is being read
    notes: list[tuple[int, list[str]]]  # for the tap, once it has seen the request
    faults: ConnectionFaults | None
    bodies: BodyFaults | None

    def _answer(self, stream_id: int, answer: bytes, notes: list[str]) -> None: ...


def data(reader: Reader, frame: h2.Frame, strict: bool) -> bool:
    """A DATA frame of a stream in `reader.checking`: True when it was taken (held, sent on
    after judging, or dropped with a refusal); False lets it go on as it is."""
    check = reader.checking[frame.stream_id]
    raw = frame.raw or b""
    check.buffer += bodycheck.data_content(frame.flags, raw)
    buffer = check.buffer
    size = int.from_bytes(buffer[1:5], "big") if len(buffer) >= 5 else -1
    end_stream = bool(frame.flags & h2.FLAG_END_STREAM)
    if (size < 0 or len(buffer) < 5 + size) and not end_stream and size <= bodycheck.MAX_CHECKED:
        return False  # the message goes on in a later frame: this one may go now
    del reader.checking[frame.stream_id]
    notes, refusal = bodycheck.judge(check.path, buffer, size, strict) if check.judge else ([], None)
    if refusal is None and notes and notes[0].startswith(bodycheck.IGNORED):
        log.warning("conn %d: %s: %s", reader.conn.id, check.path, notes[0])
    if refusal is None:
        if check.call is None or not _settle(reader, frame, check.call, buffer, size):
            reader.route.out(raw)
        if notes:
            reader.notes.append((frame.stream_id, notes))
        return True
    code, details = refusal
    stream_id = frame.stream_id
    reader.route.out(h2.rst_stream_frame(stream_id))  # the runtime has the headers and all but this frame
    reader.conn.open_streams.discard(stream_id)
    reader.route.hijacked.add(stream_id)  # what either side sends on it from now on is dropped
    if frame.length:
        reader.conn.inject_to_client(h2.window_update_frame(0, frame.length))
    reader._answer(stream_id, answers.error(stream_id, code, details), notes)
    return True


def _settle(reader: Reader, frame: h2.Frame, call: CallPath, buffer: bytearray, size: int) -> bool:
    """A fault decision on the request's pod facts (cri_proxy.proxy.bodyfaults): True when it took the frame."""
    if reader.bodies is None or reader.faults is None:
        return False
    whole = 0 <= size <= bodycheck.MAX_CHECKED and len(buffer) >= 5 + size and not buffer[0]
    return reader.bodies.settle(reader.faults, reader, frame, call, bytes(buffer[5:5 + size]) if whole else None)
