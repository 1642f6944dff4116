"""A call the tap is reading: its `RecordedCall`, and where its messages stand.

Nearly every DATA frame of a CRI call holds one whole gRPC message, so an open call reads its
messages straight from the frame (its body one slice of the relayed chunk) and counts them;
a direction gets a `wire.MessageReader` only at its first message cut by a frame's or a
chunk's end (or when its bytes stop: a gap), and that reader reads the rest of it.
"""

from __future__ import annotations

import struct
from dataclasses import fields

from cri_proxy.model.call import FORMAT_VERSION, Direction, Message, Metadata, Outcome, RecordedCall
from cri_proxy.model.link import LEAN_SUMMARY, read_lean_data
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.recorder.wire import SHARE_MIN_BYTES, LastBodies, MessageReader, known_body, share_bodies

_PREFIX = struct.Struct(">BI").unpack_from  # a gRPC message's compressed flag and length
_REQUEST, _RESPONSE, _COMPLETED = Direction.REQUEST, Direction.RESPONSE, Outcome.COMPLETED
# RecordedCall's fields in its constructor's order: `new_call` passes them all by position, which
# costs about half what keywords do (2 us of a small call's 12 in the tap). Should they ever
# differ, it falls back to keywords (tests/recorder/test_opencall.py says so).
FIELD_ORDER = ("conn_id", "stream_id", "started_at", "path", "duration_s", "upstream", "peer_pid", "peer_uid",
               "client_api", "upstream_api", "request_metadata", "response_metadata", "trailers", "status_code",
               "status_message", "outcome", "messages", "request_bytes", "response_bytes", "notes", "format_version",
               "peer_gid", "peer_name", "peer_exe")
POSITIONAL = tuple(f.name for f in fields(RecordedCall)) == FIELD_ORDER


def new_call(info: ConnectionInfo, stream_id: int, started_at: float, path: str, upstream: str, api: str | None,
             metadata: Metadata, notes: list[str]) -> RecordedCall:
    """A call just opened (request headers read), as `RecordedCall`'s defaults would have it otherwise."""
    if POSITIONAL:
        return RecordedCall(info.conn_id, stream_id, started_at, path, None, upstream, info.peer_pid, info.peer_uid,
                            api, api, metadata, [], [], None, None, _COMPLETED, [], 0, 0, notes, FORMAT_VERSION,
                            info.peer_gid, info.peer_name, info.peer_exe)
    return RecordedCall(info.conn_id, stream_id, started_at, path, upstream=upstream, peer_pid=info.peer_pid,
                        peer_uid=info.peer_uid, client_api=api, upstream_api=api, request_metadata=metadata,
                        notes=notes, peer_gid=info.peer_gid, peer_name=info.peer_name, peer_exe=info.peer_exe)


class OpenCall:
    """`sent`, `got`: the messages read straight from frames so far, each direction's until its
    reader (`request`, `response`) takes over."""

    __slots__ = ("rec", "t0", "request", "response", "sent", "got", "answered", "unparsed", "skimmed")

    def __init__(self, rec: RecordedCall, t0: float, skimmed: bool = False) -> None:
        self.rec = rec
        self.skimmed = skimmed
        self.t0 = t0
        self.request: MessageReader | None = None
        self.response: MessageReader | None = None
        self.sent = 0
        self.got = 0
        self.answered = False  # response headers seen
        self.unparsed = False

    def reader(self, request: bool, memo: LastBodies) -> MessageReader:
        if request:
            if self.request is None:
                self.request = MessageReader(_REQUEST, memo, self.sent)
            return self.request
        if self.response is None:
            self.response = MessageReader(_RESPONSE, memo, self.got)
        return self.response

    def messages(self, request: bool, data: bytes | memoryview, start: int, stop: int, offset: float,
                 memo: LastBodies) -> None:
        """The gRPC messages in `data[start:stop]` (a DATA frame's content or a piece of it),
        `offset` seconds into the call. A large one equal to the last body of its kind is that
        very body (`memo`: no copy; see `wire.share_bodies`)."""
        rec = self.rec
        reader = self.request if request else self.response
        if reader is None and stop - start >= 5:
            compressed, length = _PREFIX(data, start)
            if length == stop - start - 5:  # one whole message, nothing cut before it
                known = None
                if length >= SHARE_MIN_BYTES:
                    known = known_body(memo, (rec.path, request), data, start + 5, stop)
                body = data[start + 5:stop] if known is None else known
                if type(body) is not bytes:
                    body = bytes(body)
                if request:
                    index = self.sent
                    self.sent = index + 1
                    rec.request_bytes += length
                else:
                    index = self.got
                    self.got = index + 1
                    rec.response_bytes += length
                rec.messages.append(Message(_REQUEST if request else _RESPONSE, index, offset, body, compressed != 0))
                if length >= SHARE_MIN_BYTES and known is None:
                    share_bodies(memo, rec, len(rec.messages) - 1)
                return
        if reader is None:
            reader = self.reader(request, memo)
        before = len(rec.messages)
        reader.feed(memoryview(data)[start:stop] if type(data) is bytes else data[start:stop], rec, offset)
        if len(rec.messages) > before:
            share_bodies(memo, rec, before)

    def counted(self, data: bytes | memoryview, start: int, stop: int) -> bool:
        """The client's DATA `data[start:stop]` when nothing needs message bodies (metrics only,
        the recorder's lean mode): one whole message, nothing cut before it, counted as
        `messages` would count it but not kept. False for any other shape (`messages` reads it)."""
        if self.request is not None or stop - start < 5:
            return False
        length = _PREFIX(data, start)[1]
        if length != stop - start - 5:
            return False
        self.sent += 1
        self.rec.request_bytes += length
        return True

    def lean(self, payload: bytes | memoryview, start: int = 0, stop: int | None = None) -> bool:
        """A lean DATA frame of the server's (proxy.lean), `payload[start:stop]`: its messages
        counted as the full bytes would count them. False when its padding was malformed."""
        size = (len(payload) if stop is None else stop) - start
        if size != LEAN_SUMMARY.size:  # a small frame of one whole message, passed as it is
            bad, messages, size = False, 1, size - 5
        else:
            bad, messages, size = read_lean_data(bytes(payload[start:start + size]))
        if bad:
            return False
        reader = self.response
        if messages and (reader is None or reader.stopped is None):
            if reader is None:
                self.got += messages
            else:
                reader.count += messages
            self.rec.response_bytes += size
        return True
