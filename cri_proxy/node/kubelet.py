"""Which sockets the kubelet dials, and where that is set: its command line or its
KubeletConfiguration file.

The kubelet's flags come from a running kubelet's /proc/PID/cmdline when there is one (what
it really uses), else from kubelet.service as systemd assembles it. A flag beats the config
file's field; the config file is the one `--config` names. The config file is read and edited
line by line at the top level, so comments and layout survive an edit (a JSON file is read
and rewritten as JSON).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from cri_proxy.node.paths import KUBELET_DEFAULT_ENDPOINT, NodeRoot
from cri_proxy.node.systemd import load_service

RUNTIME_FLAG = "--container-runtime-endpoint"
IMAGE_FLAG = "--image-service-endpoint"
RUNTIME_FIELD = "containerRuntimeEndpoint"
IMAGE_FIELD = "imageServiceEndpoint"
_TOP_LEVEL = re.compile(r"^(?P<key>[A-Za-z][A-Za-z0-9]*)(?P<sep>\s*:\s*)(?P<value>.*?)(?P<tail>\s*(#.*)?)$")


def parse_flags(argv: list[str]) -> dict[str, str]:
    """`--name=value` and `--name value` words (the last one wins, as in the kubelet's pflag)."""
    flags: dict[str, str] = {}
    for i, word in enumerate(argv):
        if not word.startswith("--"):
            continue
        name, eq, value = word.partition("=")
        if not eq:
            following = argv[i + 1] if i + 1 < len(argv) else ""
            value = "" if following.startswith("--") else following
        flags[name] = value
    return flags


def running_kubelets(node: NodeRoot) -> list[tuple[int, list[str]]]:
    """(pid, argv) of each process under the root's /proc whose program is named kubelet."""
    found = []
    proc = node.at("/proc")
    try:
        entries = [e for e in os.listdir(proc) if e.isdigit()]
    except OSError:
        return []
    for pid in sorted(entries, key=int):
        try:
            argv = (proc / pid / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # the process ended, or is not ours to read
        words = [w.decode(errors="replace") for w in argv if w]
        if words and os.path.basename(words[0]) == "kubelet":
            found.append((int(pid), words))
    return found


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def read_config(text: str) -> dict[str, str]:
    """The top-level scalar fields of a KubeletConfiguration (YAML or JSON)."""
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        match = _TOP_LEVEL.match(line)
        if match and match.group("value"):
            fields[match.group("key")] = _unquote(match.group("value"))
    return fields


def edit_config(text: str, values: dict[str, str], add: bool = False) -> str:
    """`text` with the top-level fields in `values` set to them, every other byte as it was (a
    JSON file is re-dumped). A field not present is appended when `add`, else left out."""
    if text.lstrip().startswith("{"):
        data = json.loads(text)
        data.update({k: v for k, v in values.items() if add or k in data})
        return json.dumps(data, indent=2) + "\n"
    lines = text.splitlines(keepends=True)
    missing = dict(values)
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        match = _TOP_LEVEL.match(body)
        if match and match.group("key") in values:
            key = match.group("key")
            lines[i] = f"{key}{match.group('sep')}{values[key]}{match.group('tail')}{line[len(body):]}"
            missing.pop(key, None)
    if add and missing:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.extend(f"{key}: {value}\n" for key, value in missing.items())
    return "".join(lines)


@dataclass
class KubeletView:
    """What the kubelet on a node uses, and where each value came from."""

    source: str  # "process 1234" or "kubelet.service" or "nothing found"
    argv: list[str] = field(default_factory=list)
    flags: dict[str, str] = field(default_factory=dict)
    config_path: str | None = None  # the node path of the KubeletConfiguration file
    config: dict[str, str] = field(default_factory=dict)
    unit_files: list[str] = field(default_factory=list)
    env_file_extra_args: str | None = None  # KUBELET_EXTRA_ARGS set by an EnvironmentFile=
    uses_extra_args: bool = False  # ExecStart= expands $KUBELET_EXTRA_ARGS

    def endpoint(self, image: bool = False) -> tuple[str, str]:
        """(endpoint, where it is set) of the runtime or image service; the image service
        falls back to the runtime's, as in the kubelet."""
        flag, key = (IMAGE_FLAG, IMAGE_FIELD) if image else (RUNTIME_FLAG, RUNTIME_FIELD)
        if self.flags.get(flag):
            return self.flags[flag], f"the kubelet's {flag} flag"
        if self.config.get(key):
            return self.config[key], f"{key} in {self.config_path}"
        if image:
            return self.endpoint(image=False)
        return KUBELET_DEFAULT_ENDPOINT, "the kubelet's default"

    def image_set(self) -> bool:
        return bool(self.flags.get(IMAGE_FLAG) or self.config.get(IMAGE_FIELD))


def inspect(node: NodeRoot, default_config: str, skip: tuple[str, ...] = ()) -> KubeletView:
    """Read the kubelet's flags and config file under `node` (unit files in `skip` ignored)."""
    service = load_service(node, "kubelet.service", skip)
    env_extra = service.env_from_files(node).get("KUBELET_EXTRA_ARGS")
    uses_extra = any("KUBELET_EXTRA_ARGS" in line for line in service.exec_start[-1:])
    running = running_kubelets(node)
    if running:
        pid, argv = running[0]
        source = f"the running kubelet (pid {pid})"
    elif service.exec_start:
        argv, source = service.argv(node), "kubelet.service (" + ", ".join(service.files) + ")"
    else:
        argv, source = [], "nothing (no running kubelet, no kubelet.service)"
    flags = parse_flags(argv[1:])
    config_path = flags.get("--config") or (default_config if node.at(default_config).is_file() else None)
    text = node.read_text(config_path) if config_path else None
    return KubeletView(source=source, argv=argv, flags=flags, config_path=config_path,
                       config=read_config(text) if text is not None else {}, unit_files=service.files,
                       env_file_extra_args=env_extra, uses_extra_args=uses_extra)
