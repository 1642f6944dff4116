"""Render a CRI schema's descriptor data (../shared/cri-schema/*.descriptor.json) as .proto text.

This is how protos/runtime/*/api.proto were first written: from the wire facts only (names,
numbers, types, labels, options), with none of the upstream text. The .proto files are the
source from then on; tests/test_protos.py checks them against the descriptor data again.

    python protos/render_schema.py ../shared/cri-schema/cri-v1-v0.36.3.descriptor.json > protos/runtime/v1/api.proto
"""

from __future__ import annotations

import json
import sys
from typing import Any

SCALARS = {
    "TYPE_BOOL": "bool", "TYPE_STRING": "string", "TYPE_BYTES": "bytes", "TYPE_DOUBLE": "double",
    "TYPE_FLOAT": "float", "TYPE_INT32": "int32", "TYPE_INT64": "int64", "TYPE_UINT32": "uint32",
    "TYPE_UINT64": "uint64", "TYPE_SINT32": "sint32", "TYPE_SINT64": "sint64",
}


def _type(field: dict[str, Any], package: str) -> str:
    if field["type"] in SCALARS:
        return SCALARS[field["type"]]
    name = field["type_name"]
    prefix = "." + package + "."
    return name[len(prefix):] if name.startswith(prefix) else name


def _options(opts: dict[str, Any] | None) -> str:
    if not opts:
        return ""
    parts = [f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in opts.items()]
    return " [" + ", ".join(parts) + "]"


def _enum(enum: dict[str, Any], indent: str) -> list[str]:
    out = [f"{indent}enum {enum['name']} {{"]
    for value in enum["value"]:
        out.append(f"{indent}    {value['name']} = {value['number']}{_options(value.get('options'))};")
    out.append(f"{indent}}}")
    return out


def _message(msg: dict[str, Any], package: str, indent: str) -> list[str]:
    maps = {n["name"]: n for n in msg.get("nested_type", []) if n.get("options", {}).get("map_entry")}
    out = [f"{indent}message {msg['name']} {{"]
    for enum in msg.get("enum_type", []):
        out += _enum(enum, indent + "    ")
    for nested in msg.get("nested_type", []):
        if nested["name"] not in maps:
            out += _message(nested, package, indent + "    ")
    for field in msg.get("field", []):
        opts = _options(field.get("options"))
        entry_name = field.get("type_name", "").rsplit(".", 1)[-1]
        if field["label"] == "LABEL_REPEATED" and entry_name in maps:
            key, value = maps[entry_name]["field"]
            decl = f"map<{_type(key, package)}, {_type(value, package)}>"
        else:
            decl = ("repeated " if field["label"] == "LABEL_REPEATED" else "") + _type(field, package)
        out.append(f"{indent}    {decl} {field['name']} = {field['number']}{opts};")
    out.append(f"{indent}}}")
    return out


def render(fd: dict[str, Any]) -> str:
    package = fd["package"]
    out = [f'syntax = "{fd.get("syntax", "proto2")}";', "", f"package {package};", ""]
    for key, value in fd.get("options", {}).items():
        out.append(f'option {key} = "{value}";')
    for service in fd.get("service", []):
        out += ["", f"service {service['name']} {{"]
        for m in service["method"]:
            stream_in = "stream " if m.get("client_streaming") else ""
            stream_out = "stream " if m.get("server_streaming") else ""
            out.append(f"    rpc {m['name']}({stream_in}{_type({'type': 'M', 'type_name': m['input_type']}, package)})"
                       f" returns ({stream_out}{_type({'type': 'M', 'type_name': m['output_type']}, package)}) {{}}")
        out.append("}")
    for enum in fd.get("enum_type", []):
        out += [""] + _enum(enum, "")
    for msg in fd.get("message_type", []):
        out += [""] + _message(msg, package, "")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        sys.stdout.write(render(json.load(f)))
