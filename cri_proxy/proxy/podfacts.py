"""Pod facts for fault rules: read from request messages, and learned about ids from answers.

A fault rule may match on a pod's namespace and name, a container's name and an image. Some
requests carry those (RunPodSandbox, CreateContainer, PullImage); most name only an id
(StopPodSandbox's pod_sandbox_id, StartContainer's container_id). The relay reads the facts
from the protobuf wire format, where cri_proxy.proxy.podfields (generated from the schema)
says they sit, and keeps an id -> facts table (`FactTable`) fed by what passes:
RunPodSandbox and CreateContainer answers (the new id, with the request's facts), the
kubelet's relists (ListPodSandbox, ListContainers: id, metadata and image of everything that
runs) and its PodSandboxStatus and ContainerStatus answers (one pod's or container's id,
metadata and image), which also teach a proxy started after the pods what it missed: a
kubelet asks both of every pod it finds after its own restart. A Remove* answer forgets its id.
The table is bounded: past its size the id learned longest ago goes first, and the next
relist brings it back if it still runs. A relist the same as the last one read, with nothing
forgotten since, is not parsed again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Final

from cri_proxy.faults.book import CallFacts
from cri_proxy.model.protowire import WireError, read_varint
from cri_proxy.proxy.podfields import REPLIES, REQUESTS, Tree

Facts = dict[str, str]  # fact name ("pod", "namespace", "container", "image", "sandbox_id", "container_id") -> value

MAX_SANDBOXES: Final = 4096  # a node runs at most a few hundred pods
MAX_CONTAINERS: Final = 16384
FORGETS: Final = {"RemovePodSandbox": "sandbox_id", "RemoveContainer": "container_id"}
_MAX_DEPTH: Final = 8


def carries_facts(method: str) -> bool:
    """Whether a request of `method` names a pod, container or image (or an id of one)."""
    return method in REQUESTS


def learns(method: str) -> bool:
    """Whether the answer to `method` teaches the table something (a new id, a relist, a removal)."""
    return method in REPLIES or method in FORGETS


def learns_with_request(method: str) -> bool:
    """Whether what the answer to `method` teaches needs its request too (RunPodSandbox's pod,
    RemoveContainer's id), unlike a relist or a *Status answer, which says it all."""
    return method in FORGETS or method in REPLIES and not REPLIES[method][0]


def read(tree: Tree, data: bytes, out: Facts, pos: int = 0, end: int = -1, depth: int = 0) -> Facts:
    """The facts `tree` says `data[pos:end]` holds, into `out` (a later field wins, as in protobuf)."""
    if depth > _MAX_DEPTH:
        raise WireError("message nested too deeply")
    for number, start, stop in _spans(data, pos, len(data) if end < 0 else end):
        entry = tree.get(number)
        if isinstance(entry, str):
            out[entry] = data[start:stop].decode("utf-8", "replace")
        elif entry is not None:
            read(entry, data, out, start, stop, depth + 1)
    return out


def _spans(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(number, start, stop) of each length-delimited field of `data[pos:end]`, the others skipped.

    Unlike bodycheck.fields, nothing is built for a field: a relist's labels and annotations
    are passed over by their length, so reading a 100-container ListContainers answer costs a
    walk over a few dozen keys per container."""
    while pos < end:
        key, pos = read_varint(data, pos, end)
        wire = key & 7
        if key >> 3 == 0:
            raise WireError("field number 0")
        if wire == 2:
            length, pos = read_varint(data, pos, end)
            if pos + length > end:
                raise WireError("truncated length-delimited field")
            yield key >> 3, pos, pos + length
            pos += length
        elif wire == 0:
            pos = read_varint(data, pos, end)[1]
        elif wire == 1 or wire == 5:
            pos += 8 if wire == 1 else 4
        else:
            raise WireError(f"wire type {wire} (groups are not in CRI)")
    if pos > end:
        raise WireError("truncated fixed-width field")


def request_facts(method: str, message: bytes) -> Facts:
    """The facts a request message of `method` carries itself; WireError when it is not protobuf."""
    tree = REQUESTS.get(method)
    return read(tree, message, {}) if tree is not None else {}


def readable_facts(method: str, message: bytes | None) -> Facts:
    """`request_facts`, or none when the message is not whole or not protobuf (the runtime judges it)."""
    if message is None:
        return {}
    try:
        return request_facts(method, message)
    except WireError:
        return {}


def with_pod(facts: CallFacts, found: Facts) -> CallFacts:
    """`facts` with the pod facts `found` (a request's, resolved through the table) added."""
    return dataclasses.replace(facts, namespace=found.get("namespace"), pod=found.get("pod"),
                               container=found.get("container"), image=found.get("image"))


def reply_records(method: str, message: bytes) -> list[Facts]:
    """The records an answer of `method` holds: one, or one per item of a relist."""
    items, tree = REPLIES[method]
    if not items:
        return [read(tree, message, {})]
    return [read(tree, message, {}, start, stop) for number, start, stop in _spans(message, 0, len(message))
            if number == items]


class FactTable:
    """What the relay knows of sandbox and container ids (see the module's docstring); one per proxy."""

    def __init__(self, max_sandboxes: int = MAX_SANDBOXES, max_containers: int = MAX_CONTAINERS) -> None:
        self.sandboxes: dict[str, Facts] = {}  # id -> pod, namespace
        self.containers: dict[str, Facts] = {}  # id -> container, image, sandbox_id (and pod, namespace if told)
        self.limits = (max_sandboxes, max_containers)
        self.forgotten = 0  # ids forgotten or dropped so far: a relist read before may teach them again
        # method -> its last relist (or *Status answer) read, and `forgotten` then
        self.relists: dict[str, tuple[bytes, int]] = {}

    def answer(self, method: str, facts: Facts, message: bytes) -> None:
        """What the answer `message` to a call of `method` teaches; `facts` are its request's.
        WireError when the answer is not protobuf (the table then learns nothing)."""
        kind = FORGETS.get(method)
        if kind is not None:
            ident = facts.get(kind)
            if ident:
                self.forget(kind, ident)
            return
        if REPLIES[method][0]:  # a relist or a *Status answer: each record stands alone
            if self.new_relist(method, message):
                for record in reply_records(method, message):
                    self.learn(record)
        else:  # a new id: the request said the rest
            for record in reply_records(method, message):
                self.learn({**facts, **record})

    def new_relist(self, method: str, message: bytes) -> bool:
        """False when `message` is the answer of `method` read last, with nothing forgotten since:
        it has nothing to teach (the kubelet relists every second, mostly the same answer)."""
        if self.relists.get(method) == (message, self.forgotten):
            return False
        self.relists[method] = (message, self.forgotten)
        return True

    def learn(self, record: Facts) -> None:
        """A record from an answer (with its request's facts): what it says of its ids."""
        sandbox, container = record.get("sandbox_id"), record.get("container_id")
        if sandbox and ("pod" in record or "namespace" in record):
            self.forgotten += _put(self.sandboxes, sandbox, {k: record[k] for k in ("pod", "namespace") if k in record},
                                   self.limits[0])
        if container:
            kept = {k: v for k, v in record.items() if k != "container_id"}
            self.forgotten += _put(self.containers, container, kept, self.limits[1])

    def forget(self, kind: str, ident: str) -> None:
        """A removed sandbox (and its containers) or container."""
        self.forgotten += 1
        if kind == "sandbox_id":
            self.sandboxes.pop(ident, None)
            for gone in [c for c, facts in self.containers.items() if facts.get("sandbox_id") == ident]:
                del self.containers[gone]
        else:
            self.containers.pop(ident, None)

    def resolve(self, found: Facts) -> Facts:
        """`found` with what the table knows of its ids added; what the request says itself wins."""
        container = self.containers.get(found.get("container_id", ""))
        if container is not None:
            for key, value in container.items():
                found.setdefault(key, value)
        sandbox = self.sandboxes.get(found.get("sandbox_id", ""))
        if sandbox is not None:
            for key, value in sandbox.items():
                found.setdefault(key, value)
        return found


def _put(table: dict[str, Facts], key: str, facts: Facts, limit: int) -> int:
    """Learn `facts` of `key`; how many ids were dropped to stay within `limit`."""
    old = table.pop(key, None)  # re-inserted last: the most recently learned goes last
    if old is not None:
        facts = {**old, **facts}
    table[key] = facts
    dropped = 0
    while len(table) > limit:
        del table[next(iter(table))]
        dropped += 1
    return dropped
