"""A call on its way through the recorder's pipeline, and the interface of the pipeline's peers.

Below the peers (keep, redact, decode, ids) and the pipeline that composes them, so that
each peer names its item without importing the pipeline.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from cri_proxy.messages.decode import JsonDecoder
from cri_proxy.model.call import Direction, RecordedCall
from cri_proxy.recorder.bodies import BodyMemo

_REQUEST = Direction.REQUEST  # bound once: an Enum member off its class is a metaclass lookup

CALL_OVERHEAD_BYTES = 512  # what a queued call costs beyond its message bytes, roughly
Json = dict[str, Any]


@dataclass(slots=True)
class PreparedCall:
    """A call on its way to the writer, with what the peers found out about it."""

    call: RecordedCall
    size: int  # what it costs in the queue, in bytes
    redacted: bool = False  # redaction changed or dropped something
    ids: dict[str, str | None] = field(default_factory=dict)
    exit_code: int | None = None  # ExecSync's exit code, set by the ids stage
    decoder: JsonDecoder | None = None  # set by the decode stage; None: no JSON is stored
    shas: BodyMemo[str] | None = None  # the recent bodies' sha256 (the decode stage's), to hash each once
    _shas: list[str | None] | None = None  # made when first asked for (most calls: by the writer)
    _json: dict[int, Json | None] | None = None

    @classmethod
    def of(cls, call: RecordedCall) -> PreparedCall:
        size = CALL_OVERHEAD_BYTES
        for message in call.messages:
            size += len(message.data)
        return cls(call, size)

    def sha(self, index: int) -> str:
        """The sha256 (hex) of message `index`'s bytes, computed once."""
        shas = self._shas
        if shas is None:
            shas = self._shas = [None] * len(self.call.messages)
        sha = shas[index]
        if sha is None:
            message = self.call.messages[index]
            memo = self.shas
            if memo is None:
                sha = hashlib.sha256(message.data).hexdigest()
            else:
                kind = (self.call.path, message.direction is _REQUEST)
                known = memo.find(kind, message.data)
                if known is not None:
                    message.data, sha = known  # equal bytes: the call keeps the one copy already held
                else:
                    sha = hashlib.sha256(message.data).hexdigest()
                    memo.add(kind, message.data, sha)
            shas[index] = sha
        return sha

    def decoded(self, index: int) -> Json | None:
        """Message `index` as JSON (None: not decodable, or no decoder), decoded once."""
        if self.decoder is None:
            return None
        known = self._json
        if known is None:
            known = self._json = {}
        if index not in known:
            message = self.call.messages[index]
            known[index] = self.decoder.decode(
                self.call.path, message.direction.value, message.data, self.sha(index), message.compressed)
        return known[index]

    def decoded_already(self, index: int) -> bool:
        """Whether message `index`'s JSON was asked for already (then it is held anyway)."""
        return self._json is not None and index in self._json

    def first(self, direction: Direction) -> Json | None:
        """The JSON of the call's first message going `direction`, if any."""
        for i, message in enumerate(self.call.messages):
            if message.direction is direction:
                return self.decoded(i)
        return None

    def restart(self) -> None:
        """The call's messages were replaced: forget hashes and JSON made from the old ones."""
        self._shas = None
        self._json = None


class Stage(Protocol):
    """A peer of the pipeline."""

    @property
    def name(self) -> str:
        """For the log: "keep", "redact"..."""

    def process(self, item: PreparedCall) -> PreparedCall | None:
        """The item to pass on (the same or changed), or None to drop the call."""
