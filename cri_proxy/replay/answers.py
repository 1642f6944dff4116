"""Choosing the recorded answer for a request, for `serve`.

Both CRI versions share one index: calls are keyed by service and method name
(`RuntimeService/ListContainers`), since v1 and v1alpha2 messages use the same field numbers
and a recorded answer's bytes parse in either version. For a request:

1. the method was never recorded: None (the server answers UNIMPLEMENTED);
2. candidates: the recorded calls with the same request bytes; else with the same decoded
   request (`--ignore`-style volatile fields left out); else the closest requests (fewest
   differing fields), but only when every id and image the request names was named by some
   recorded request of that method: a ContainerStatus for a container the recording never
   asked about is NOT_FOUND, as a runtime would answer, rather than some other container's
   status (`NoAnswer`);
3. among the candidates the timeline decides: the latest recorded at or before the serve
   clock mapped onto the recording (first served call = first recorded call), else the
   earliest (with `TIMELINE_SLACK_S` of slack). So polling calls repeated more often than recorded see the node as it was at
   that point of the recording.
Ids are served as recorded (no remapping): a client that runs the recorded sequence sends
the recorded ids back. A shorter id is taken as a runtime takes it (containerd's id index):
a `container_id` or `pod_sandbox_id` (or a List* filter's `id`) that is the prefix of exactly
one container or pod id the recording names stands for that id; the prefix of several is
containerd's error (`Ambiguous`: UNKNOWN, "Multiple IDs found with provided prefix"); the
prefix of none is left as it is (NOT_FOUND, as for any id never recorded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cri_proxy.model.call import Outcome
from cri_proxy.model.cri import parse_path
from google.protobuf import json_format

from cri_proxy.messages.decode import decode_message, message_class, method_types, protobuf_json
from cri_proxy.replay.compare import Comparer
from cri_proxy.store.rows import StoredCall

_ID_KEYS = ("id", "image", "image_ref")
# The serve clock starts when the first call arrives, a little after its client started: a
# client repeating the recorded pace would otherwise land just before each recorded call.
TIMELINE_SLACK_S = 0.05


class NoAnswer(Exception):
    """The method was recorded, but with no request close enough to this one."""


class Ambiguous(Exception):
    """An id prefix that names several recorded containers or pods; the message is the one
    containerd gives (as gRPC UNKNOWN)."""

    def __init__(self, kind: str, prefix: str) -> None:
        super().__init__(f'an error occurred when try to find {kind} "{prefix}": '
                         f"Multiple IDs found with provided prefix: {prefix}")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Entry:
    call: StoredCall
    offset_s: float  # from the recording's first call
    request: bytes
    canonical: str  # the decoded request, as sorted JSON
    doc: dict[str, Any]


def method_key(path: str) -> str:
    """'RuntimeService/ListContainers' for either version's path."""
    parts = parse_path(path)
    return f"{parts.short_service}/{parts.method}"


def idents(doc: Any, out: set[str] | None = None) -> set[str]:
    """The ids and image names a decoded request names."""
    out = set() if out is None else out
    if isinstance(doc, dict):
        for key, value in doc.items():
            if isinstance(value, str) and value and (key in _ID_KEYS or key.endswith("_id")):
                out.add(value)
            else:
                idents(value, out)
    elif isinstance(doc, list):
        for value in doc:
            idents(value, out)
    return out


class Answers:
    def __init__(self, calls: list[StoredCall]) -> None:
        self.comparer = Comparer()
        self.first_unix = calls[0].started_unix if calls else 0.0
        self.index: dict[str, list[Entry]] = {}
        self.named: dict[str, set[str]] = {}
        # The ids a short prefix may stand for: every container and pod the recording names.
        self.known: dict[str, set[str]] = {"container": set(), "sandbox": set()}
        for call in calls:
            for kind, column in (("container", "container_id"), ("sandbox", "pod_sandbox_id")):
                if call.ids.get(column):
                    self.known[kind].add(str(call.ids[column]))
            if not _servable(call):
                continue
            request = call.requests[0] if call.requests else b""
            doc = decode_message(call.path, "request", request) or {}
            entry = Entry(call, call.started_unix - self.first_unix, request, _canonical(doc), doc)
            key = method_key(call.path)
            self.index.setdefault(key, []).append(entry)
            self.named.setdefault(key, set()).update(idents(doc))

    def knows(self, path: str) -> bool:
        return method_key(path) in self.index

    def pick(self, path: str, request: bytes, at_s: float) -> tuple[Entry, str]:
        """The answer for `request` at `at_s` seconds into the recording, and how it was
        matched ("bytes", "json" or "closest"); NoAnswer when none fits."""
        entries = self.index[method_key(path)]
        request = self.expand_prefixes(path, request)
        chosen = [e for e in entries if e.request == request]
        how = "bytes"
        if not chosen:
            doc = decode_message(path, "request", request) or {}
            canonical = _canonical(doc)
            chosen, how = [e for e in entries if e.canonical == canonical], "json"
            if not chosen:
                chosen, how = self._closest(path, doc, entries), "closest"
        earlier = [e for e in chosen if e.offset_s <= at_s + TIMELINE_SLACK_S]
        return (earlier[-1] if earlier else chosen[0]), how

    def expand_prefixes(self, path: str, request: bytes) -> bytes:
        """The request with each unique id prefix replaced by its id (the same bytes when
        nothing was shortened); Ambiguous for a prefix of several ids."""
        doc = decode_message(path, "request", request)
        cls = message_class(path, "request")
        if not doc or cls is None or "_error" in doc:
            return request
        filter_kind = "sandbox" if "PodSandbox" in path else "container"
        fields = [(doc, "container_id", "container"), (doc, "pod_sandbox_id", "sandbox")]
        if isinstance(doc.get("filter"), dict):
            sub = doc["filter"]
            fields += [(sub, "id", filter_kind), (sub, "pod_sandbox_id", "sandbox")]
        changed = False
        for holder, key, kind in fields:
            value = holder.get(key)
            if not isinstance(value, str) or not value or value in self.known[kind]:
                continue
            hits = [full for full in self.known[kind] if full.startswith(value)]
            if len(hits) > 1 and holder is doc:
                raise Ambiguous(kind, value)
            if len(hits) == 1:
                holder[key], changed = hits[0], True
        if not changed:
            return request
        return bytes(json_format.ParseDict(protobuf_json(doc), cls()).SerializeToString())

    def _closest(self, path: str, doc: dict[str, Any], entries: list[Entry]) -> list[Entry]:
        unknown = idents(doc) - self.named[method_key(path)]
        if unknown:
            raise NoAnswer(f"no recorded {method_key(path)} names {', '.join(sorted(unknown))}")
        scored = [(len(self.comparer.diff(e.doc, doc)), e) for e in entries]
        best = min(score for score, _ in scored)
        return [e for score, e in scored if score == best]


def _servable(call: StoredCall) -> bool:
    types = method_types(call.path)
    if types is None or not call.complete:
        return False
    if types.server_streaming:
        return True
    return call.outcome == Outcome.COMPLETED.value and call.status_code is not None


def _canonical(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))
