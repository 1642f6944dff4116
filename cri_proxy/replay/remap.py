"""Id remapping: a replayed RunPodSandbox or CreateContainer gets a new id from the target, and
every later call that named the recorded id must name the new one.

Requests are rewritten by parsing them with the method's request type (either CRI version)
and replacing every string field, repeated string and map value that equals a recorded id
with the target's id, then re-encoding. Responses are compared after the opposite
substitution (target id -> recorded id, also inside longer strings such as log paths), so
the comparison sees the recording's ids on both sides. CRI ids are 64 hex digits: a string
equal to one is that id.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from cri_proxy.messages.decode import method_types
from cri_proxy.model.cri import parse_path

# Where each creating method's response carries the new id.
CREATED_ID_FIELD = {"RunPodSandbox": "pod_sandbox_id", "CreateContainer": "container_id"}


class IdMap:
    """Recorded id <-> target id, learnt as creating calls are replayed."""

    def __init__(self) -> None:
        self.forward: dict[str, str] = {}  # recorded -> target
        self.backward: dict[str, str] = {}  # target -> recorded

    def learn(self, recorded: str, target: str) -> None:
        if recorded and target and recorded != target:
            self.forward[recorded] = target
            self.backward[target] = recorded

    def learn_from(self, path: str, recorded_response: bytes, target_response: bytes) -> None:
        """Learns the id a creating call returned, comparing the recorded and the new answer."""
        method = parse_path(path).method
        name = CREATED_ID_FIELD.get(method)
        types = method_types(path)
        if name is None or types is None:
            return
        try:
            old = getattr(types.response.FromString(recorded_response), name)
            new = getattr(types.response.FromString(target_response), name)
        except DecodeError:
            return
        self.learn(old, new)

    def rewrite_request(self, path: str, data: bytes) -> bytes:
        """The request with recorded ids replaced by the target's (unchanged when none apply)."""
        types = method_types(path)
        if not self.forward or types is None:
            return data
        try:
            message = types.request.FromString(data)
        except DecodeError:
            return data
        if not _replace_ids(message, self.forward):
            return data
        return message.SerializeToString(deterministic=True)

    def back_to_recorded(self, doc: Any) -> Any:
        """A decoded response with target ids turned back into the recorded ones."""
        if not self.backward:
            return doc
        if isinstance(doc, dict):
            return {k: self.back_to_recorded(v) for k, v in doc.items()}
        if isinstance(doc, list):
            return [self.back_to_recorded(v) for v in doc]
        if isinstance(doc, str):
            if doc in self.backward:
                return self.backward[doc]
            for new, old in self.backward.items():
                if new in doc:
                    doc = doc.replace(new, old)
            return doc
        return doc


def _replace_ids(message: ProtoMessage, ids: dict[str, str]) -> bool:
    """Replaces ids in place, recursively; True when anything changed."""
    changed = False
    for fd, value in message.ListFields():
        entry = fd.message_type
        if fd.type == FieldDescriptor.TYPE_MESSAGE and entry is not None and entry.GetOptions().map_entry:
            value_type = entry.fields_by_name["value"].type
            if value_type == FieldDescriptor.TYPE_STRING:
                for key, item in list(value.items()):
                    if item in ids:
                        value[key] = ids[item]
                        changed = True
            elif value_type == FieldDescriptor.TYPE_MESSAGE:
                for item in value.values():
                    changed = _replace_ids(item, ids) or changed
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            if _is_repeated(fd):
                for item in value:
                    changed = _replace_ids(item, ids) or changed
            else:
                changed = _replace_ids(value, ids) or changed
        elif fd.type == FieldDescriptor.TYPE_STRING:
            if _is_repeated(fd):
                for i, item in enumerate(value):
                    if item in ids:
                        value[i] = ids[item]
                        changed = True
            elif value in ids:
                setattr(message, fd.name, ids[value])
                changed = True
    return changed


def _is_repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)
