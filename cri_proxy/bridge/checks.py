"""Checks on a v1 request before it goes to a v1alpha2 runtime: nothing is lost silently.

A request is parsed (once, as its v1 type) only when `schema.checked_requests` says its type
can carry a field the old runtime would drop or reject. The findings are field paths in the
style of the diff data ("config.mounts[0].recursive_read_only").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from cri_proxy.bridge import schema


@dataclass(slots=True)
class Findings:
    """What a request sets that a v1alpha2 runtime would ignore or reject."""

    dropped: list[str] = field(default_factory=list)  # v1-only fields that are set
    security: list[str] = field(default_factory=list)  # those of them in SECURITY_FIELDS
    bad_utf8: list[str] = field(default_factory=list)  # "config.envs[2] (NAME)"


def inspect(msg: Message) -> Findings:
    found = Findings()
    _walk(msg, "", found)
    return found


def _walk(msg: Message, prefix: str, found: Findings) -> None:
    desc = msg.DESCRIPTOR
    added = schema.added_fields(desc.full_name)
    retyped = schema.retyped_fields(desc.full_name)
    for fd, value in msg.ListFields():
        path = f"{prefix}{fd.name}"
        if fd.number in added:
            found.dropped.append(path)
            if f"{desc.name}.{fd.name}" in schema.SECURITY_FIELDS:
                found.security.append(path)
            continue
        if fd.number in retyped and fd.type == FieldDescriptor.TYPE_BYTES:
            _check_utf8(msg, value, prefix, found)
        if fd.message_type is None or fd.message_type.GetOptions().map_entry:
            continue  # string maps: nothing v1-only inside
        if fd.is_repeated:
            for i, item in enumerate(value):
                _walk(item, f"{path}[{i}].", found)
        else:
            _walk(value, f"{path}.", found)


def _check_utf8(msg: Message, value: bytes, prefix: str, found: Findings) -> None:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        key = getattr(msg, "key", "")
        found.bad_utf8.append(f"{prefix.rstrip('.')} ({key!r})")
