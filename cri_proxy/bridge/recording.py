"""The bridge's record of each call it serves, handed to a `CallSink` after the reply went out.

`CallLog` collects what the handler saw as it went (raw messages, metadata, status, notes);
`attach` registers a done-callback on the server context so the `RecordedCall` is built only
once grpc has finished the call: recording never delays a reply.
"""

from __future__ import annotations

import base64
import itertools
import logging
import time
from typing import Any, Protocol

import grpc

from cri_proxy.model.call import Direction, Message, Metadata, Outcome, RecordedCall
from cri_proxy.model.sink import CallSink

log = logging.getLogger(__name__)

_call_ids = itertools.count(1)

# grpc.aio.Metadata or a sequence of (key, str | bytes) pairs; grpc-stubs types them apart.
MetadataPairs = Any


class Caller(Protocol):
    """Who made a bridged call: the relay's client (proxy.peer.PeerCred), as the recording has it."""

    @property
    def pid(self) -> int | None: ...

    @property
    def uid(self) -> int | None: ...

    @property
    def gid(self) -> int | None: ...

    @property
    def name(self) -> str | None: ...

    @property
    def exe(self) -> str | None: ...


def as_text(metadata: MetadataPairs | None) -> Metadata:
    """Metadata as the recorder stores it: binary (-bin) values base64 text."""
    out: Metadata = []
    for key, value in metadata or ():
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode("ascii")
        out.append((key, value))
    return out


class CallLog:
    """One bridged call as it happens. `id` is the bridge's own call number, used in logs."""

    def __init__(self, sink: CallSink | None, path: str, client_api: str | None,
                 upstream: str, metadata: MetadataPairs) -> None:
        self.id = next(_call_ids)
        self.sink = sink
        self.path = path
        self.client_api = client_api
        self.upstream_api: str | None = None
        self.upstream = upstream
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self.request_metadata = metadata
        self.response_metadata: MetadataPairs = ()
        self.trailers: MetadataPairs = ()
        self.code: grpc.StatusCode | None = None
        self.details: str | None = None
        self.notes: list[str] = []
        self.caller: Caller | None = None  # the relay's client on whose connection the call came
        self._messages: list[tuple[Direction, float, bytes]] = []

    def add(self, direction: Direction, data: bytes) -> None:
        if self.sink is not None:
            self._messages.append((direction, time.monotonic() - self._t0, data))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def status(self, code: grpc.StatusCode, details: str | None,
               trailers: MetadataPairs | None = None) -> None:
        self.code, self.details = code, details
        self.trailers = trailers or ()

    def attach(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self.sink is not None:
            context.add_done_callback(self._done)  # type: ignore[arg-type]  # stubs want a class

    def _done(self, context: Any) -> None:
        try:
            self._submit(bool(context.cancelled()) if context is not None else False)
        except Exception:  # recording fails open
            log.exception("call %d %s: could not record", self.id, self.path)

    def _submit(self, cancelled: bool) -> None:
        if self.sink is None:
            return
        call = RecordedCall(
            conn_id=0, stream_id=self.id, started_at=self.started_at, path=self.path,
            duration_s=time.monotonic() - self._t0, upstream=self.upstream,
            client_api=self.client_api, upstream_api=self.upstream_api,
            request_metadata=as_text(self.request_metadata),
            response_metadata=as_text(self.response_metadata),
            trailers=as_text(self.trailers),
            status_code=None if self.code is None else self.code.value[0],
            status_message=self.details,
            outcome=Outcome.CANCELLED if cancelled and self.code is None else Outcome.COMPLETED,
            notes=list(self.notes),
        )
        if (who := self.caller) is not None:
            call.peer_pid, call.peer_uid, call.peer_gid, call.peer_name, call.peer_exe = \
                who.pid, who.uid, who.gid, who.name, who.exe
        counts = {Direction.REQUEST: 0, Direction.RESPONSE: 0}
        for direction, offset, data in self._messages:
            call.add_message(Message(direction, counts[direction], offset, data))
            counts[direction] += 1
        self.sink.submit(call)
