"""The recorded call: the one object every stage speaks in terms of.

The tap (or the bridge) builds a `RecordedCall` on the call path and hands it to the
recorder; everything slow (HPACK is already done, but protobuf decoding to JSON, redaction,
deduplication, SQLite) happens later in the writer. Raw message bytes are the source of
truth; decoded JSON is a view made from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from cri_proxy.model.cri import api_version_of, parse_path
from cri_proxy.model.status import failed

FORMAT_VERSION = 1

Metadata = list[tuple[str, str]]  # header name, value; binary (-bin) values are base64 text


class Direction(str, Enum):
    REQUEST = "request"
    RESPONSE = "response"


class Outcome(str, Enum):
    """How a call ended, as seen on the wire."""

    COMPLETED = "completed"  # trailers with grpc-status arrived
    CANCELLED = "cancelled"  # RST_STREAM from either side before trailers
    CONNECTION_CLOSED = "connection_closed"  # the connection ended with the call open
    UNPARSED = "unparsed"  # the tap could not follow this call's frames


@dataclass(slots=True)
class Message:
    """One length-prefixed gRPC message of a call, as on the wire."""

    direction: Direction
    index: int  # position among the call's messages of the same direction, from 0
    offset_s: float  # seconds from the call's start to the message's last byte
    data: bytes  # the message bytes (after the 5-byte prefix); compressed if `compressed`
    compressed: bool = False


@dataclass(slots=True)
class RecordedCall:
    """A gRPC call seen by the proxy. Times are seconds (wall clock for `started_at`)."""

    conn_id: int
    stream_id: int
    started_at: float  # time.time() when the request headers were seen
    path: str  # "/runtime.v1.RuntimeService/Version"
    duration_s: float | None = None  # None while open or when it never finished
    upstream: str = ""  # "unix:///run/containerd/containerd.sock"
    peer_pid: int | None = None
    peer_uid: int | None = None
    client_api: str | None = None  # "v1" / "v1alpha2" as the client spoke it (None: not CRI)
    upstream_api: str | None = None  # as the runtime was spoken to (differs when translated)
    request_metadata: Metadata = field(default_factory=list)
    response_metadata: Metadata = field(default_factory=list)
    trailers: Metadata = field(default_factory=list)
    status_code: int | None = None  # grpc-status; None when none arrived
    status_message: str | None = None  # grpc-message, percent-decoded
    outcome: Outcome = Outcome.COMPLETED
    messages: list[Message] = field(default_factory=list)
    request_bytes: int = 0  # sum of request message sizes (prefix excluded)
    response_bytes: int = 0
    notes: list[str] = field(default_factory=list)  # translation and tap notes, one line each
    format_version: int = FORMAT_VERSION
    # Who else was on the connection (the relay reads them at accept: SO_PEERCRED, /proc);
    # None when unknown. Last, so that positional construction stays as it was.
    peer_gid: int | None = None
    peer_name: str | None = None  # /proc/PID/comm: "kubelet", "crictl"
    peer_exe: str | None = None  # /proc/PID/exe; None when it could not be read (another user's process)

    @property
    def service(self) -> str:
        """"runtime.v1.RuntimeService" for "/runtime.v1.RuntimeService/Version"."""
        return parse_path(self.path).service

    @property
    def method(self) -> str:
        return parse_path(self.path).method

    @property
    def failed(self) -> bool:
        """The one failure rule (model.status.failed) applied to this call."""
        return failed(self.outcome.value, self.status_code)

    def add_message(self, message: Message) -> None:
        self.messages.append(message)
        if message.direction is Direction.REQUEST:
            self.request_bytes += len(message.data)
        else:
            self.response_bytes += len(message.data)

    def to_state(self) -> dict[str, Any]:
        """The call as plain data (str, int, float, bytes, None, lists, dicts): lossless, so
        that `from_state(call.to_state()) == call`, whatever carries it (a pipe, a file)."""
        state: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "messages":
                value = [{"direction": m.direction.value, "index": m.index, "offset_s": m.offset_s,
                          "data": m.data, "compressed": m.compressed} for m in value]
            elif f.name == "outcome":
                value = value.value
            elif f.name in ("request_metadata", "response_metadata", "trailers"):
                value = [list(pair) for pair in value]
            elif f.name == "notes":
                value = list(value)
            state[f.name] = value
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RecordedCall:
        """The call `to_state` described. A state of an older format version (fewer keys)
        takes the defaults; a key this version does not know is a ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = set(state) - known
        if unknown:
            raise ValueError(f"not a recorded call of format {FORMAT_VERSION}: unknown {', '.join(sorted(unknown))}")
        values = dict(state)
        values["messages"] = [Message(Direction(m["direction"]), m["index"], m["offset_s"], m["data"], m["compressed"])
                              for m in state.get("messages", [])]
        if "outcome" in state:
            values["outcome"] = Outcome(state["outcome"])
        for key in ("request_metadata", "response_metadata", "trailers"):
            if key in state:
                values[key] = [(name, value) for name, value in state[key]]
        return cls(**values)


__all__ = ["FORMAT_VERSION", "Direction", "Message", "Metadata", "Outcome", "RecordedCall", "api_version_of"]
