"""The CRI schemas: generated code is fresh, and the compiled descriptors match the wire facts.

Three checks:
- `protos/generate.py` run now produces, byte for byte, what is committed in cri_proxy/pb/.
- Our compiled `runtime.v1` / `runtime.v1alpha2` descriptors equal the upstream descriptor
  sets in tests/data/cri-schema (copied from ../shared/cri-schema) (cri-api v0.36.3 and the last v1alpha2) in every message,
  field, enum, value, service and RPC, reported as one readable list of differences.
- The machine-readable v1-vs-v1alpha2 diff agrees with what our two descriptors say.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from cri_proxy.pb.runtime.v1 import api_pb2 as v1_pb2
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2_pb2
from tests.conftest import ROOT

SCHEMA = ROOT / "tests" / "data" / "cri-schema"  # a copy of ../shared/cri-schema's data
PB = ROOT / "cri_proxy" / "pb"
V036 = "cri-v1-v0.36.3.pb"  # the release the project pins runtime.v1 to
V1_MASTER = "cri-v1.pb"  # what v1-vs-v1alpha2.json was computed against
V1ALPHA2 = "cri-v1alpha2.pb"



# --- staleness -------------------------------------------------------------------------


def _load_generate() -> Any:
    spec = importlib.util.spec_from_file_location("crip_generate", ROOT / "protos" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.py*") if p.is_file() and "__pycache__" not in p.parts}


def stale_files(generated: pathlib.Path, committed: pathlib.Path) -> list[str]:
    """Relative paths that differ between two generated trees, each with why."""
    new, old = _tree(generated / "runtime"), _tree(committed / "runtime")
    problems = [f"runtime/{name}: {'not committed' if name not in old else 'differs'}" for name in sorted(new) if new[name] != old.get(name)]
    problems += [f"runtime/{name}: committed but no longer generated" for name in sorted(old.keys() - new.keys())]
    return problems


def test_generated_code_is_fresh(tmp_path: pathlib.Path) -> None:
    _load_generate().generate(tmp_path)
    problems = stale_files(tmp_path, PB)
    if problems:
        pytest.fail(
            "cri_proxy/pb/ is stale against protos/ (or was made with another grpcio-tools than the pinned one):\n  "
            + "\n  ".join(problems)
            + "\nregenerate with: .venv/bin/python protos/generate.py"
        )


# --- descriptors as comparable facts ---------------------------------------------------

# Repeated descriptor fields whose elements carry a `name`: each becomes a named element.
KINDS = {"message_type": "message", "nested_type": "message", "field": "field", "enum_type": "enum",
         "value": "enum value", "service": "service", "method": "rpc", "oneof_decl": "oneof", "extension": "extension"}


class Facts:
    """A descriptor flattened to named elements and their attributes, so two can be diffed."""

    def __init__(self) -> None:
        self.elements: dict[str, tuple[str, str | None]] = {}  # path -> (kind, parent path)
        self.attrs: dict[tuple[str, str], Any] = {}  # (element path, attribute) -> value
        self.defaults: dict[str, Any] = {}  # attribute -> its value when unset

    def add(self, msg: Message, path: str, prefix: str = "") -> None:
        for fd, value in msg.ListFields():
            if fd.type != FieldDescriptor.TYPE_MESSAGE:
                # proto2 descriptors tell "set to the default" from "unset"; the wire does not
                if not fd.is_repeated:
                    self.defaults[prefix + fd.name] = _scalar(fd, fd.default_value)
                if fd.is_repeated or value != fd.default_value:
                    self.attrs[(path, prefix + fd.name)] = _scalar(fd, value)
            elif not fd.is_repeated:
                self.add(value, path, f"{prefix}{fd.name}.")
            else:
                for i, item in enumerate(value):
                    if fd.name in KINDS and not prefix:
                        child = f"{path}.{item.name}"
                        if child in self.elements:
                            raise ValueError(f"two descriptor elements share the path {child}")
                        self.elements[child] = (KINDS[fd.name], path)
                        self.add(item, child)
                    else:
                        self.add(item, path, f"{prefix}{fd.name}[{i}].")
        unknown = UnknownFieldSet(msg)
        for i in range(len(unknown)):
            self.attrs[(path, f"{prefix}<field {unknown[i].field_number}>")] = unknown[i].data

    def present(self, path: str) -> bool:
        return path in self.elements


def _scalar(fd: FieldDescriptor, value: Any) -> Any:
    if fd.enum_type is None:
        return value
    if fd.is_repeated:
        return [fd.enum_type.values_by_number[v].name for v in value]
    return fd.enum_type.values_by_number[value].name


def diff(ours: Facts, theirs: Facts) -> list[str]:
    """Readable differences; an element missing on one side is reported once, not per attribute."""
    out = []
    for side, have, lack in (("ours", theirs, ours), ("upstream", ours, theirs)):
        for path, (kind, parent) in have.elements.items():
            if path not in lack.elements and (parent is None or lack.present(parent)):
                out.append(f"{path}: {kind} missing from {side}")
    for key in sorted(ours.attrs.keys() | theirs.attrs.keys()):
        path, attr = key
        if ours.present(path) and theirs.present(path):
            unset = ours.defaults.get(attr, theirs.defaults.get(attr, "<unset>"))
            mine, upstream = ours.attrs.get(key, unset), theirs.attrs.get(key, unset)
            if mine != upstream:
                out.append(f"{path}: {attr} {mine!r} (ours) != {upstream!r} (upstream)")
    return sorted(out)


def load_set(name: str) -> descriptor_pb2.FileDescriptorSet:
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString((SCHEMA / name).read_bytes())
    return fds


def upstream_file(name: str) -> descriptor_pb2.FileDescriptorProto:
    return load_set(name).file[-1]  # --include_imports puts dependencies first


def compiled_file(desc: FileDescriptor) -> descriptor_pb2.FileDescriptorProto:
    """Our descriptor as protoc would write it: the Python generator drops json_name from the
    embedded descriptor, so take the json_name the runtime uses from the live descriptors."""
    proto = descriptor_pb2.FileDescriptorProto()
    desc.CopyToProto(proto)

    def fill(msgs: Iterable[descriptor_pb2.DescriptorProto], by_name: Mapping[str, Descriptor]) -> None:
        for msg in msgs:
            live = by_name[msg.name]
            for f in msg.field:
                f.json_name = live.fields_by_name[f.name].json_name
            fill(msg.nested_type, live.nested_types_by_name)

    fill(proto.message_type, desc.message_types_by_name)
    return proto


def facts(proto: descriptor_pb2.FileDescriptorProto, ignore_file_options: frozenset[int] = frozenset()) -> Facts:
    result = Facts()
    result.elements[proto.package] = ("file", None)
    result.add(proto, proto.package)
    # The file's name is its import path (ours is compiled as runtime/v1/api.proto, upstream's
    # as pkg/apis/runtime/v1/api.proto); it never reaches the wire and only names the file in a
    # descriptor pool. Upstream v1alpha2 imports gogo.proto for Go-only codegen file options
    # (README: "they never reach the wire"); ours has neither the import nor the options.
    result.attrs.pop((proto.package, "name"), None)
    result.attrs.pop((proto.package, "dependency"), None)
    for number in ignore_file_options:
        result.attrs.pop((proto.package, f"options.<field {number}>"), None)
    return result


def gogo_file_options(fds: descriptor_pb2.FileDescriptorSet) -> frozenset[int]:
    """Numbers of the FileOptions extensions declared by the set's imported files."""
    return frozenset(e.number for f in fds.file[:-1] for e in f.extension if e.extendee == ".google.protobuf.FileOptions")


# --- the schema test -------------------------------------------------------------------


@pytest.mark.parametrize(("module", "reference"), [(v1_pb2, V036), (v1alpha2_pb2, V1ALPHA2)], ids=["v1", "v1alpha2"])
def test_compiled_schema_matches_upstream(module: Any, reference: str) -> None:
    upstream_set = load_set(reference)
    ignore = gogo_file_options(upstream_set)
    problems = diff(facts(compiled_file(module.DESCRIPTOR)), facts(upstream_set.file[-1], ignore))
    if problems:
        pytest.fail(f"{len(problems)} differences from {reference}:\n  " + "\n  ".join(problems))


def test_schema_diff_names_each_difference() -> None:
    """The comparison itself: a changed number, option, RPC flag or element shows up by name."""
    text = """
        package: "p"
        message_type { name: "Mount" field { name: "ro" number: 8 label: LABEL_OPTIONAL type: TYPE_BOOL json_name: "ro" } }
        message_type { name: "Auth" field { name: "password" number: 2 type: TYPE_STRING options { debug_redact: true } } }
        service { name: "S" method { name: "A" input_type: ".p.Mount" output_type: ".p.Auth" }
                            method { name: "B" input_type: ".p.Mount" output_type: ".p.Auth" } }
    """
    upstream = text_format.Parse(text, descriptor_pb2.FileDescriptorProto())
    ours = descriptor_pb2.FileDescriptorProto()
    ours.CopyFrom(upstream)
    ours.message_type[0].field[0].number = 9
    ours.message_type[1].field[0].ClearField("options")
    ours.service[0].method[0].server_streaming = True
    del ours.service[0].method[1]
    ours.message_type.add(name="Extra").field.add(name="x", number=1)
    assert diff(facts(ours), facts(upstream)) == [
        "p.Auth.password: options.debug_redact False (ours) != True (upstream)",
        "p.Extra: message missing from upstream",
        "p.Mount.ro: number 9 (ours) != 8 (upstream)",
        "p.S.A: server_streaming True (ours) != False (upstream)",
        "p.S.B: rpc missing from ours",
    ]


def rpc_counts(proto: descriptor_pb2.FileDescriptorProto) -> dict[str, int]:
    return {s.name: len(s.method) for s in proto.service}


def test_rpc_counts() -> None:
    """README counts (37+6 / 24+5) are cri-api master's; v0.36.3 lacks master's added RPCs."""
    summary = load_diff()["summary"]
    ours_v1, ours_v1alpha2 = compiled_file(v1_pb2.DESCRIPTOR), compiled_file(v1alpha2_pb2.DESCRIPTOR)
    master = upstream_file(V1_MASTER)
    assert rpc_counts(ours_v1) == rpc_counts(upstream_file(V036))
    assert rpc_counts(ours_v1alpha2) == rpc_counts(upstream_file(V1ALPHA2)) == summary["rpcs_v1alpha2"]
    assert rpc_counts(master) == summary["rpcs_v1"]
    ours_rpcs = {(s.name, m.name) for s in ours_v1.service for m in s.method}
    master_only = {(s.name, m.name) for s in master.service for m in s.method} - ours_rpcs
    assert {f"{svc}.{m}" for svc, m in master_only} == master_tagged(load_diff())["rpcs"]


# --- the v1-vs-v1alpha2 diff against our two descriptors -------------------------------

Field = tuple[int, str, str, str]  # number, label, type, type_name (package-relative)
WIRE = {"TYPE_STRING": "LEN", "TYPE_BYTES": "LEN", "TYPE_MESSAGE": "LEN", "TYPE_DOUBLE": "I64", "TYPE_FIXED64": "I64",
        "TYPE_SFIXED64": "I64", "TYPE_FLOAT": "I32", "TYPE_FIXED32": "I32", "TYPE_SFIXED32": "I32"}


@dataclass
class Shape:
    """A schema as the diff file speaks of it: package-relative names, nested as Outer.Inner."""

    messages: dict[str, dict[str, Field]] = field(default_factory=dict)
    enums: dict[str, dict[str, int]] = field(default_factory=dict)
    rpcs: dict[str, tuple[str, str, bool, bool]] = field(default_factory=dict)


def shape(proto: descriptor_pb2.FileDescriptorProto) -> Shape:
    result, prefix = Shape(), f".{proto.package}."
    fdp = descriptor_pb2.FieldDescriptorProto

    def rel(name: str) -> str:
        return name.removeprefix(prefix)

    def walk(msgs: Iterable[descriptor_pb2.DescriptorProto], outer: str) -> None:
        for msg in msgs:
            name = outer + msg.name
            result.messages[name] = {f.name: (f.number, fdp.Label.Name(f.label), fdp.Type.Name(f.type), rel(f.type_name)) for f in msg.field}
            result.enums |= {f"{name}.{e.name}": {v.name: v.number for v in e.value} for e in msg.enum_type}
            walk(msg.nested_type, name + ".")

    walk(proto.message_type, "")
    result.enums |= {e.name: {v.name: v.number for v in e.value} for e in proto.enum_type}
    result.rpcs = {f"{s.name}.{m.name}": (rel(m.input_type), rel(m.output_type), m.client_streaming, m.server_streaming)
                   for s in proto.service for m in s.method}
    return result


def wire_type(f: Field) -> str:
    if f[1] == "LABEL_REPEATED" and f[2] not in WIRE:
        return "LEN"  # proto3 packs repeated numeric fields
    return WIRE.get(f[2], "VARINT")


def load_diff() -> dict[str, Any]:
    return json.loads((SCHEMA / "v1-vs-v1alpha2.json").read_text())


def master_tagged(d: dict[str, Any]) -> dict[str, set[str]]:
    """What the diff marks as added on cri-api master after the release we pin."""
    def new(e: dict[str, Any]) -> bool:
        return str(e.get("introduced_in_v1", "")).startswith("master")

    return {
        "rpcs": {f"{svc}.{e['name']}" for svc, v in d["services"].items() for e in v["only_in_v1"] if new(e)},
        "messages": {e["name"] for e in d["messages_only_in_v1"] if new(e)},
        "enums": {e["name"] for e in d["enums_only_in_v1"] if new(e)},
        "fields": {f"{m}.{f['name']}" for m, v in d["messages_in_both_with_differences"].items()
                   for f in v["fields_added_in_v1"] if new(f)},
    }


def _json_field(f: dict[str, Any]) -> Field:
    return (f["number"], f["label"], f["type"], f.get("type_name", ""))


def _compare(problems: list[str], what: str, ours: Any, documented: Any) -> None:
    """Append what differs, item by item for collections, to `problems`."""
    if ours == documented:
        return
    if isinstance(ours, dict) and isinstance(documented, dict):
        problems += [f"{what}: {k} only in ours {ours[k]!r}" for k in sorted(ours.keys() - documented.keys())]
        problems += [f"{what}: {k} only in the diff file {documented[k]!r}" for k in sorted(documented.keys() - ours.keys())]
        problems += [f"{what}: {k} ours {ours[k]!r} != diff file {documented[k]!r}"
                     for k in sorted(ours.keys() & documented.keys()) if ours[k] != documented[k]]
    elif isinstance(ours, list | set) and isinstance(documented, list | set) and set(ours) != set(documented):
        problems += [f"{what}: {k!r} only in ours" for k in sorted(set(ours) - set(documented))]
        problems += [f"{what}: {k!r} only in the diff file" for k in sorted(set(documented) - set(ours))]
    else:
        problems.append(f"{what}: ours {ours!r} != diff file {documented!r}")


def diff_file_problems(d: dict[str, Any], v1: Shape, v1a2: Shape, master: Shape, pinned: Shape) -> list[str]:
    """Where the diff file (computed against master) disagrees with our v1 and v1alpha2.

    Master's additions over the pinned release are taken from the two upstream descriptor sets
    (not from a hand-kept list): they are dropped from the file's lists before comparing, and
    master's renamed enum values are mapped back to the pinned names by number."""
    problems: list[str] = []
    gap_msgs = master.messages.keys() - pinned.messages.keys()
    tagged = master_tagged(d)
    _compare(problems, "RPCs master adds to the pinned release", master.rpcs.keys() - pinned.rpcs.keys(), tagged["rpcs"])
    _compare(problems, "messages master adds to the pinned release", gap_msgs, tagged["messages"])
    _compare(problems, "enums master adds to the pinned release", master.enums.keys() - pinned.enums.keys(), tagged["enums"])
    gap_fields = {f"{m}.{f}" for m in master.messages.keys() & pinned.messages.keys() & v1a2.messages.keys()
                  for f in master.messages[m].keys() - pinned.messages[m].keys()}
    _compare(problems, "shared-message fields master adds to the pinned release", gap_fields, tagged["fields"])
    for svc, entry in d["services"].items():
        only = {f"{svc}.{e['name']}": (e["input"], e["output"], e["client_streaming"], e["server_streaming"])
                for e in entry["only_in_v1"] if f"{svc}.{e['name']}" not in tagged["rpcs"]}
        _compare(problems, f"{svc} RPCs only in v1", {k: v for k, v in v1.rpcs.items() if k.startswith(svc + ".") and k not in v1a2.rpcs}, only)
        _compare(problems, f"{svc} RPCs only in v1alpha2", sorted(k for k in v1a2.rpcs.keys() - v1.rpcs.keys() if k.startswith(svc + ".")), entry["only_in_v1alpha2"])
        shared = sorted(k for k in v1.rpcs.keys() & v1a2.rpcs.keys() if k.startswith(svc + "."))
        _compare(problems, f"{svc} RPCs in both", shared, sorted(f"{svc}.{n}" for n in entry["in_both"]))
        _compare(problems, f"{svc} RPC signature differences", [k for k in shared if v1.rpcs[k] != v1a2.rpcs[k]], entry["signature_differences"])
    only_v1 = {e["name"]: e for e in d["messages_only_in_v1"] if e["name"] not in gap_msgs}
    _compare(problems, "messages only in v1", sorted(v1.messages.keys() - v1a2.messages.keys()), sorted(only_v1))
    _compare(problems, "messages only in v1alpha2", sorted(v1a2.messages.keys() - v1.messages.keys()), sorted(e["name"] for e in d["messages_only_in_v1alpha2"]))
    for name, entry in only_v1.items():
        documented = {f["name"]: _json_field(f) for f in entry["fields"] if f["name"] in pinned.messages[name] or f["name"] not in master.messages[name]}
        _compare(problems, f"v1-only message {name} fields", v1.messages.get(name), documented)
    changed = d["messages_in_both_with_differences"]
    _compare(problems, "messages in both", sorted(v1.messages.keys() & v1a2.messages.keys()), sorted([*changed, *d["messages_in_both_identical"]]))
    for name in sorted(v1.messages.keys() & v1a2.messages.keys()):
        problems += _shared_message_problems(name, v1.messages[name], v1a2.messages[name], changed.get(name), tagged["fields"])
    problems += _enum_problems(d, v1, v1a2, master, pinned)
    return problems


def _shared_message_problems(name: str, new: dict[str, Field], old: dict[str, Field], entry: dict[str, Any] | None, master_fields: set[str]) -> list[str]:
    problems: list[str] = []
    entry = entry or {"fields_added_in_v1": [], "fields_removed_in_v1": [], "fields_changed": []}
    by_num_new, by_num_old = {f[0]: (n, f) for n, f in new.items()}, {f[0]: (n, f) for n, f in old.items()}
    added = {by_num_new[n][0]: by_num_new[n][1] for n in by_num_new.keys() - by_num_old.keys()}
    _compare(problems, f"{name} fields added in v1", added,
             {f["name"]: _json_field(f) for f in entry["fields_added_in_v1"] if f"{name}.{f['name']}" not in master_fields})
    _compare(problems, f"{name} fields removed in v1", sorted(by_num_old[n][0] for n in by_num_old.keys() - by_num_new.keys()),
             sorted(f["name"] for f in entry["fields_removed_in_v1"]))
    both = sorted(by_num_new.keys() & by_num_old.keys())
    _compare(problems, f"{name} fields changed at the same number", [n for n in both if by_num_new[n] != by_num_old[n]],
             [f["number"] for f in entry["fields_changed"]])
    for number in both:
        wire = wire_type(by_num_new[number][1]), wire_type(by_num_old[number][1])
        if wire[0] != wire[1]:
            problems.append(f"{name}.{by_num_new[number][0]} ({number}): wire type {wire[0]} in v1, {wire[1]} in v1alpha2")
    for f in (f for f in entry["fields_changed"] if f["number"] in both):
        _compare(problems, f"{name} field {f['number']} wire types (v1, v1alpha2)",
                 (wire_type(by_num_new[f["number"]][1]), wire_type(by_num_old[f["number"]][1])), (f["wire_type_v1"], f["wire_type_v1alpha2"]))
    return problems


def _enum_problems(d: dict[str, Any], v1: Shape, v1a2: Shape, master: Shape, pinned: Shape) -> list[str]:
    problems: list[str] = []
    only = {e["name"]: e["values"] for e in d["enums_only_in_v1"] if e["name"] in pinned.enums}
    _compare(problems, "enums only in v1", sorted(v1.enums.keys() - v1a2.enums.keys()), sorted(only))
    for name, values in only.items():
        # master renamed some values (same numbers): read the file's names through master's
        # number -> name map back to the pinned release's names
        pinned_name = {n: v for v, n in pinned.enums[name].items()}
        documented = {pinned_name.get(n, v) if master.enums[name].get(v) == n else v: n for v, n in values.items()}
        _compare(problems, f"v1-only enum {name} values", v1.enums.get(name), documented)
    _compare(problems, "enums only in v1alpha2", sorted(v1a2.enums.keys() - v1.enums.keys()), sorted(e["name"] for e in d["enums_only_in_v1alpha2"]))
    shared = sorted(v1.enums.keys() & v1a2.enums.keys())
    _compare(problems, "enums in both", shared, sorted([*d["enums_in_both_identical"], *d["enums_in_both_with_differences"]]))
    _compare(problems, "enums in both with differences", [e for e in shared if v1.enums[e] != v1a2.enums[e]], sorted(d["enums_in_both_with_differences"]))
    return problems


def test_diff_file_agrees_with_our_descriptors() -> None:
    d = load_diff()
    v1, v1a2 = shape(compiled_file(v1_pb2.DESCRIPTOR)), shape(compiled_file(v1alpha2_pb2.DESCRIPTOR))
    master, pinned = shape(upstream_file(V1_MASTER)), shape(upstream_file(V036))
    problems = diff_file_problems(d, v1, v1a2, master, pinned)
    s = d["summary"]
    counts = {"messages_v1": len(master.messages), "messages_v1alpha2": len(v1a2.messages), "enums_v1": len(master.enums),
              "enums_v1alpha2": len(v1a2.enums), "messages_only_in_v1": len(d["messages_only_in_v1"]),
              "fields_added_in_v1_to_shared_messages": sum(len(v["fields_added_in_v1"]) for v in d["messages_in_both_with_differences"].values())}
    problems += [f"summary {k}: {s[k]} but the data says {v}" for k, v in counts.items() if s[k] != v]
    if problems:
        pytest.fail(f"{len(problems)} disagreements with v1-vs-v1alpha2.json:\n  " + "\n  ".join(problems))
