"""The facts the bridge rests on: shared messages are wire-compatible both ways, and the sets
the bridge derives from descriptors match the published diff data."""

from __future__ import annotations

import json

import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from cri_proxy.bridge import schema
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from tests.conftest import ROOT

DIFF = ROOT / "tests" / "data" / "cri-schema" / "v1-vs-v1alpha2.json"


def _diff() -> dict:
    return json.loads(DIFF.read_text())


def _all_messages(desc: Descriptor) -> list[Descriptor]:
    out = [desc]
    for nested in desc.nested_types:
        out += _all_messages(nested)
    return out


def _shared_messages() -> list[tuple[Descriptor, Descriptor]]:
    pairs = []
    for top in v1alpha2.DESCRIPTOR.message_types_by_name.values():
        for old in _all_messages(top):
            new = v1.DESCRIPTOR.pool.FindMessageTypeByName(
                old.full_name.replace("runtime.v1alpha2.", "runtime.v1.", 1))
            pairs.append((new, old))
    return pairs


SCALARS = {
    FieldDescriptor.TYPE_STRING: lambda n: f"s{n}-é",
    FieldDescriptor.TYPE_BYTES: lambda n: f"b{n}".encode(),
    FieldDescriptor.TYPE_BOOL: lambda n: True,
    FieldDescriptor.TYPE_DOUBLE: lambda n: n + 0.5,
    FieldDescriptor.TYPE_FLOAT: lambda n: n + 0.5,
}


def fill(msg: Message, depth: int = 0) -> Message:
    """Set every field of `msg` (recursing a few levels) to a non-default value."""
    for fd in msg.DESCRIPTOR.fields:
        n = fd.number + depth
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            key_fd, val_fd = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
            key = _scalar(key_fd, n)
            if val_fd.message_type is None:
                getattr(msg, fd.name)[key] = _scalar(val_fd, n)
            elif depth < 4:
                fill(getattr(msg, fd.name)[key], depth + 1)
        elif fd.message_type is not None:
            if depth >= 4:
                continue
            if fd.is_repeated:
                fill(getattr(msg, fd.name).add(), depth + 1)
            else:
                fill(getattr(msg, fd.name), depth + 1)
        elif fd.is_repeated:
            getattr(msg, fd.name).append(_scalar(fd, n))
        else:
            setattr(msg, fd.name, _scalar(fd, n))
    return msg


def _scalar(fd: FieldDescriptor, n: int) -> object:
    if fd.type == FieldDescriptor.TYPE_ENUM:
        values = fd.enum_type.values
        return values[min(len(values) - 1, 1)].number
    return SCALARS.get(fd.type, lambda n: n)(n)


def _cls(desc: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(desc)


@pytest.mark.parametrize("new,old", _shared_messages(), ids=lambda d: d.name)
def test_shared_message_bytes_parse_both_ways(new: Descriptor, old: Descriptor) -> None:
    # v1 -> v1alpha2: the shared fields read the same; the v1-only ones are unknown there
    full = fill(_cls(new)())
    as_old = _cls(old).FromString(full.SerializeToString())
    back = _cls(new).FromString(as_old.SerializeToString())
    expected = _cls(new)()
    expected.CopyFrom(full)
    _clear_added(expected)
    as_old.DiscardUnknownFields()
    assert _cls(new).FromString(as_old.SerializeToString()) == expected
    assert back == full  # unknown fields are kept and go back out unchanged
    # v1alpha2 -> v1: lossless
    full_old = fill(_cls(old)())
    as_new = _cls(new).FromString(full_old.SerializeToString())
    stripped = _cls(new)()
    stripped.CopyFrom(as_new)
    stripped.DiscardUnknownFields()
    assert stripped.SerializeToString(deterministic=True) == as_new.SerializeToString(deterministic=True)
    assert _cls(old).FromString(as_new.SerializeToString()) == full_old


def _clear_added(msg: Message) -> None:
    added = schema.added_fields(msg.DESCRIPTOR.full_name)
    for fd, value in msg.ListFields():
        if fd.number in added:
            msg.ClearField(fd.name)
        elif fd.message_type is not None and not fd.message_type.GetOptions().map_entry:
            for item in (value if fd.is_repeated else [value]):
                _clear_added(item)
        elif fd.message_type is not None and fd.message_type.fields_by_name["value"].message_type:
            for item in value.values():
                _clear_added(item)


def test_invalid_utf8_env_value_is_legal_v1_but_not_v1alpha2() -> None:
    data = v1.KeyValue(key="K", value=b"\xff\xfe").SerializeToString()
    with pytest.raises(DecodeError):
        v1alpha2.KeyValue.FromString(data)


def test_every_v1alpha2_rpc_exists_in_v1_with_the_same_types() -> None:
    for name, svc in v1alpha2.DESCRIPTOR.services_by_name.items():
        new = v1.DESCRIPTOR.services_by_name[name]
        for m in svc.methods:
            assert new.methods_by_name[m.name].input_type.name == m.input_type.name
            assert new.methods_by_name[m.name].output_type.name == m.output_type.name
            assert not m.server_streaming


def test_added_fields_match_the_diff_data() -> None:
    diff = _diff()
    for name, entry in diff["messages_in_both_with_differences"].items():
        full = f"runtime.v1.{name}"
        try:
            v1.DESCRIPTOR.pool.FindMessageTypeByName(full)
        except KeyError:
            continue
        ours = schema.added_fields(full)
        known = {f.number for f in v1.DESCRIPTOR.pool.FindMessageTypeByName(full).fields}
        theirs = {f["number"] for f in entry["fields_added_in_v1"]} & known  # pinned to v0.36.3
        assert ours == theirs, name
    assert schema.retyped_fields("runtime.v1.KeyValue") == {2}


def test_checked_requests_are_those_the_diff_says_lose_fields() -> None:
    diff = _diff()
    expected = {
        name.replace(".", "/") for name, impact in diff["per_rpc_impact"].items()
        if impact["request_fields_dropped_by_v1alpha2_runtime"]
        or impact["request_fields_with_type_change"]
    }
    assert schema.checked_requests() == expected
