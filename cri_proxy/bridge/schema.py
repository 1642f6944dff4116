"""What differs between runtime.v1 and runtime.v1alpha2, derived from the generated descriptors.

Nothing here is listed by hand except `SECURITY_FIELDS` (a judgement, not a fact of the
schema): the methods each version has, the fields v1 added to messages both versions share,
the fields whose type changed (`KeyValue.value`: bytes in v1, string in v1alpha2), and from
those the request types worth parsing before they go to a v1alpha2 runtime. The tests check
these sets against the published diff (../shared/cri-schema/v1-vs-v1alpha2.json).
"""

from __future__ import annotations

from functools import cache

from google.protobuf.descriptor import Descriptor, FileDescriptor

from cri_proxy.model.cri import parse_path
from cri_proxy.pb.runtime.v1 import api_pb2 as v1_pb2
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2_pb2

VERSIONS = ("v1", "v1alpha2")
FILES: dict[str, FileDescriptor] = {"v1": v1_pb2.DESCRIPTOR, "v1alpha2": v1alpha2_pb2.DESCRIPTOR}

# v1-only request fields a v1alpha2 runtime silently ignores and that weaken isolation or
# change what runs when ignored ("Message.field", v1 names). `strict` refuses these.
SECURITY_FIELDS = frozenset({
    "Mount.recursive_read_only",
    "Mount.uidMappings",
    "Mount.gidMappings",
    "Mount.image",
    "Mount.image_sub_path",
    "Mount.mount_options",
    "LinuxSandboxSecurityContext.supplemental_groups_policy",
    "LinuxContainerSecurityContext.supplemental_groups_policy",
    "ContainerConfig.CDI_devices",
    "ContainerConfig.stop_signal",
    "ImageSpec.runtime_handler",
    "WindowsContainerResources.affinity_cpus",
    "WindowsSandboxSecurityContext.namespace_options",
})


def split_path(path: str) -> tuple[str, str, str] | None:
    """("v1", "RuntimeService", "Version") for "/runtime.v1.RuntimeService/Version", else None."""
    call = parse_path(path)
    if call.api not in VERSIONS or call.short_service not in ("RuntimeService", "ImageService") or not call.method:
        return None
    return call.api, call.short_service, call.method


def cri_path(version: str, service: str, method: str) -> str:
    return f"/runtime.{version}.{service}/{method}"


@cache
def methods(version: str) -> dict[str, frozenset[str]]:
    """Method names per service ("RuntimeService"/"ImageService") of one version."""
    return {
        name: frozenset(m.name for m in svc.methods)
        for name, svc in FILES[version].services_by_name.items()
    }


def has_method(version: str, service: str, method: str) -> bool:
    return method in methods(version).get(service, frozenset())


@cache
def server_streaming(path: str) -> bool:
    parts = split_path(path)
    if parts is None:
        return False
    version, service, method = parts
    svc = FILES[version].services_by_name.get(service)
    found = svc.methods_by_name.get(method) if svc is not None else None
    return bool(found and found.server_streaming)


def _old_message(v1_msg: Descriptor) -> Descriptor | None:
    """The v1alpha2 message with the same (possibly nested) name, if any."""
    name = v1_msg.full_name.replace("runtime.v1.", "runtime.v1alpha2.", 1)
    try:
        return v1alpha2_pb2.DESCRIPTOR.pool.FindMessageTypeByName(name)
    except KeyError:
        return None


@cache
def added_fields(v1_full_name: str) -> frozenset[int]:
    """Numbers of the fields v1 added to a shared message (empty for v1-only messages)."""
    msg = v1_pb2.DESCRIPTOR.pool.FindMessageTypeByName(v1_full_name)
    old = _old_message(msg)
    if old is None:
        return frozenset()
    return frozenset(f.number for f in msg.fields if f.number not in old.fields_by_number)


@cache
def retyped_fields(v1_full_name: str) -> frozenset[int]:
    """Numbers of the shared fields whose type differs (KeyValue.value)."""
    msg = v1_pb2.DESCRIPTOR.pool.FindMessageTypeByName(v1_full_name)
    old = _old_message(msg)
    if old is None:
        return frozenset()
    return frozenset(
        f.number for f in msg.fields
        if f.number in old.fields_by_number and old.fields_by_number[f.number].type != f.type
    )


def _reaches_difference(msg: Descriptor, seen: set[str]) -> bool:
    if msg.full_name in seen:
        return False
    seen.add(msg.full_name)
    if added_fields(msg.full_name) or retyped_fields(msg.full_name):
        return True
    for f in msg.fields:
        sub = f.message_type
        if sub is None or sub.full_name in seen or _old_message(sub) is None:
            continue
        if _reaches_difference(sub, seen):
            return True
    return False


@cache
def checked_requests() -> frozenset[str]:
    """Methods ("RuntimeService/CreateContainer") shared by both versions whose v1 request
    type can carry a v1-only or retyped field: the only requests the bridge parses."""
    result = set()
    for svc_name, names in methods("v1alpha2").items():
        svc = v1_pb2.DESCRIPTOR.services_by_name[svc_name]
        for name in names:
            if _reaches_difference(svc.methods_by_name[name].input_type, set()):
                result.add(f"{svc_name}/{name}")
    return frozenset(result)


@cache
def wire_checks() -> tuple[dict[str, str], dict[str, dict[int, tuple[str, str, str]]]]:
    """What the relay's wire-level check (cri_proxy.proxy.bodycheck) needs, without protobuf:
    the checked v1 paths and their request types, and for every message on the way to a
    difference its fields that matter: (name, kind, message type), kind one of "added",
    "security" (an added field in SECURITY_FIELDS), "utf8" (KeyValue.value, bytes in v1),
    "message" or "messages" (a field, or a repeated one, of a type that reaches a difference);
    the type is given for message fields, added ones too (they are set even when empty)."""
    requests: dict[str, str] = {}
    tables: dict[str, dict[int, tuple[str, str, str]]] = {}

    def visit(msg: Descriptor) -> None:
        if msg.full_name in tables:
            return
        table = tables[msg.full_name] = {}
        added, retyped = added_fields(msg.full_name), retyped_fields(msg.full_name)
        for f in msg.fields:
            sub = f.message_type
            if f.number in added:
                kind = "security" if f"{msg.name}.{f.name}" in SECURITY_FIELDS else "added"
                table[f.number] = (f.name, kind, sub.full_name if sub is not None else "")
            elif f.number in retyped and f.type == f.TYPE_BYTES:
                table[f.number] = (f.name, "utf8", "")
            elif (sub is not None and not sub.GetOptions().map_entry and _old_message(sub) is not None
                  and _reaches_difference(sub, set())):
                table[f.number] = (f.name, "messages" if f.is_repeated else "message", sub.full_name)
                visit(sub)

    for name in sorted(checked_requests()):
        service, method = name.split("/")
        request = v1_pb2.DESCRIPTOR.services_by_name[service].methods_by_name[method].input_type
        requests[cri_path("v1", service, method)] = request.full_name
        visit(request)
    return requests, tables


def wire_checks_source() -> str:
    """The text of cri_proxy/proxy/v1only.py (a test checks the file against it)."""
    requests, tables = wire_checks()
    lines = ['"""Generated by cri_proxy.bridge.schema.wire_checks_source() from the CRI descriptors; do not edit.',
             "", "What cri_proxy.proxy.bodycheck reads in a v1 request bound for a v1alpha2 runtime: the",
             "checked paths and their request types; per message, the fields on the way to a v1-only",
             "field or a retyped one: number -> (name, kind, message type). tests/bridge/test_schema.py",
             "checks it against the descriptors and says how to write it again.",
             '"""', "", "REQUESTS: dict[str, str] = {"]
    lines += [f"    {path!r}: {name!r}," for path, name in requests.items()]
    lines += ["}", "", "FIELDS: dict[str, dict[int, tuple[str, str, str]]] = {"]
    for name, table in tables.items():
        lines.append(f"    {name!r}: {{")
        lines += [f"        {number}: {entry!r}," for number, entry in sorted(table.items())]
        lines.append("    },")
    lines += ["}", ""]
    return "\n".join(lines).replace("'", '"')
