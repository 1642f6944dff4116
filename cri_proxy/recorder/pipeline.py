"""The recorder's pipeline: peers that each do one thing to a call, in front of the one writer.

A call the tap (or the bridge) hands over becomes a `PreparedCall`: the `RecordedCall` plus
what the peers learn about it on the way, so no peer has to redo another's work and the
writer only turns it into rows. The peers, in order:

- admission, on the call path when the call is submitted (cheap, never blocks): `keep`
  (recorder/keep.py) decides which calls are queued at all;
- preparation, on the writer's thread, once per call even when its batch is retried:
  `redact` (recorder/redact.py) blanks secrets in the message bytes, `decode` (below, over
  messages/decode.py) gives each message its JSON, lazily, `ids` (recorder/ids.py) reads
  the pod, container and image the call concerns, and an ExecSync's exit code. Later
  peers (metrics, spans) go here too.

A peer is a `Stage`: `process(item)` returns the item (changed or not) to pass it on, or
None to drop it; a peer that fails drops nothing but itself (see `Pipeline.prepare`). Each
peer is built from the parsed options (recorder/setup.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from cri_proxy.messages.decode import DecodeFn, JsonDecoder, decode_message
from cri_proxy.model.call import RecordedCall
from cri_proxy.model.options import RecorderOptions

# The peers import this module for PreparedCall only when type checking, so no cycle.
from cri_proxy.recorder.bodies import BodyMemo
from cri_proxy.recorder.ids import IdsStage
from cri_proxy.recorder.prepared import PreparedCall, Stage
from cri_proxy.recorder.keep import KeepPolicy
from cri_proxy.recorder.redact import RedactFn, RedactStage
from cri_proxy.recorder.redact_policy import RedactionPolicy

log = logging.getLogger(__name__)

class DecodeStage:
    """Gives the call's messages their JSON view (decoded only when something asks)."""

    name = "decode"

    def __init__(self, decoder: JsonDecoder) -> None:
        self.decoder = decoder
        self.shas: BodyMemo[str] = BodyMemo()  # the writer's and the decoder's key, hashed once per body

    def process(self, item: PreparedCall) -> PreparedCall:
        item.decoder = self.decoder
        item.shas = self.shas
        return item


class Pipeline:
    """Admission stages (on the call path) and preparation stages (on the writer's thread)."""

    def __init__(self, admit: Sequence[Stage] = (), prepare: Sequence[Stage] = ()) -> None:
        self.admit_stages = tuple(admit)
        self.prepare_stages = tuple(prepare)

    def admit(self, call: RecordedCall) -> PreparedCall | None:
        """The call to queue, or None when a stage declines it. A stage that fails keeps
        the call: recording too much beats losing a call to a bug."""
        item = PreparedCall.of(call)
        if not self.admit_stages:
            return item
        for stage in self.admit_stages:
            try:
                result = stage.process(item)
            except Exception:
                log.debug("call %d/%d %s: the %s stage failed; the call is kept", call.conn_id, call.stream_id,
                          call.path, stage.name, exc_info=True)
                continue
            if result is None:
                return None
            item = result
        return item

    def prepare(self, item: PreparedCall) -> PreparedCall | None:
        """The call ready for the writer, or None when a stage dropped it. A stage that
        fails drops the call: a failed redaction must not let secrets through."""
        call = item.call
        for stage in self.prepare_stages:
            try:
                result = stage.process(item)
            except Exception:
                log.exception("call %d/%d %s: the %s stage failed; the call is not recorded",
                              call.conn_id, call.stream_id, call.path, stage.name)
                return None
            if result is None:
                return None
            item = result
        return item

    def prepare_batch(self, batch: list[PreparedCall]) -> tuple[list[PreparedCall], int]:
        """The calls ready for the writer, and how many were dropped."""
        ready = [done for item in batch if (done := self.prepare(item)) is not None]
        return ready, len(batch) - len(ready)


# -- the pipelines ---------------------------------------------------------------------------


class _KeepFn:
    """A bare keep function (`KeepPolicy.keep`) as an admission stage."""

    name = "keep"

    def __init__(self, keep: Callable[[RecordedCall], bool]) -> None:
        self.keep = keep

    def process(self, item: PreparedCall) -> PreparedCall | None:
        return item if self.keep(item.call) else None


def default_pipeline(
    options: RecorderOptions,
    *,
    decode: DecodeFn | None = None,
    redact: RedactFn | None = None,
    keep: Callable[[RecordedCall], bool] | None = None,
) -> Pipeline:
    """keep -> redact -> decode -> ids, with the defaults for what is not given."""
    return Pipeline([] if keep is None else [_KeepFn(keep)], [
        RedactStage(redact=redact),
        DecodeStage(JsonDecoder(decode or decode_message, options.max_payload_bytes)),
        IdsStage(),
    ])


def build_pipeline(keep: KeepPolicy, redaction: RedactionPolicy, options: RecorderOptions) -> Pipeline:
    """What `cri-proxy run` records with: each peer built from its own (parsed) options."""
    return Pipeline([keep] if keep.selects else [], [  # keeping every call needs no peer
        RedactStage(redaction),
        DecodeStage(JsonDecoder(max_bytes=options.max_payload_bytes)),
        IdsStage(),
    ])
