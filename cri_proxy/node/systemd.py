"""Reading a service the way systemd assembles it: the unit file, its drop-ins, Environment=,
EnvironmentFile= and the ExecStart= command line with variables expanded.

Enough of systemd.unit(5), systemd.service(5) and systemd.exec(5) to learn the kubelet's
flags from its unit: comment lines, `\\` continuations, an empty assignment resetting a list,
drop-ins applied in file-name order (a name in /etc hiding the same name further down),
EnvironmentFile= values overriding Environment= ones, `$VAR` splitting into words and
`${VAR}` staying one word.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from cri_proxy.node.paths import UNIT_DIRS, NodeRoot

Sections = dict[str, dict[str, list[str]]]
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def parse_unit(text: str) -> Sections:
    """[Section] -> key -> every value assigned, in order (comments and continuations handled)."""
    sections: Sections = {}
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(("#", ";")):
            continue
        line = pending + line
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            sections.setdefault(section, {})
        elif "=" in line:
            key, value = line.split("=", 1)
            sections.setdefault(section, {}).setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=value lines (shell-style quoting, # comments), as systemd's EnvironmentFile= reads them."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        try:
            words = shlex.split(value, comments=True)
        except ValueError:
            words = [value]
        env[key.strip().removeprefix("export ").strip()] = " ".join(words)
    return env


@dataclass
class Service:
    """One service as assembled from its files: what each file said, in the order systemd reads them."""

    name: str
    files: list[str] = field(default_factory=list)  # node paths: the unit first, then its drop-ins
    environment: dict[str, str] = field(default_factory=dict)
    environment_files: list[str] = field(default_factory=list)  # as written (a leading '-' means optional)
    exec_start: list[str] = field(default_factory=list)  # the effective ExecStart= lines

    def env_from_files(self, node: NodeRoot) -> dict[str, str]:
        """What the EnvironmentFile= files set, later files winning."""
        env: dict[str, str] = {}
        for name in self.environment_files:
            text = node.read_text(name.lstrip("-"))
            if text is not None:
                env.update(parse_env_file(text))
        return env

    def effective_env(self, node: NodeRoot) -> dict[str, str]:
        return {**self.environment, **self.env_from_files(node)}

    def argv(self, node: NodeRoot) -> list[str]:
        """The last ExecStart= command with its variables expanded, as systemd would run it."""
        if not self.exec_start:
            return []
        return expand_command(self.exec_start[-1].lstrip("-@:+!"), self.effective_env(node))


def expand_command(line: str, env: dict[str, str]) -> list[str]:
    """systemd's ExecStart= expansion: `$VAR` becomes several words, `${VAR}` one word, `$$` is `$`."""
    words: list[str] = []
    for word in shlex.split(line):
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            words.extend(env.get(whole.group(1), "").split())
        else:
            words.append(_VAR.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1) or m.group(2), ""),
                                  word))
    return words


def find_files(node: NodeRoot, name: str) -> list[str]:
    """The unit file systemd would load for `name`, then its drop-ins in the order it applies them."""
    unit = next((f"{d}/{name}" for d in UNIT_DIRS if node.at(f"{d}/{name}").is_file()), None)
    dropins: dict[str, str] = {}
    for folder in reversed(UNIT_DIRS):  # a name in a more important folder hides the same name
        directory = node.at(f"{folder}/{name}.d")
        if directory.is_dir():
            for path in directory.glob("*.conf"):
                dropins[path.name] = f"{folder}/{name}.d/{path.name}"
    return ([unit] if unit else []) + [dropins[key] for key in sorted(dropins)]


def load_service(node: NodeRoot, name: str, skip: tuple[str, ...] = ()) -> Service:
    """Assemble `name` from its files under `node`, leaving out the node paths in `skip`."""
    service = Service(name)
    for path in find_files(node, name):
        if path in skip:
            continue
        text = node.read_text(path)
        if text is None:
            continue
        service.files.append(path)
        section = parse_unit(text).get("Service", {})
        for value in section.get("Environment", []):
            if not value:
                service.environment = {}  # an empty assignment resets the list
            for item in shlex.split(value):
                key, _, val = item.partition("=")
                service.environment[key] = val
        for value in section.get("EnvironmentFile", []):
            service.environment_files = service.environment_files + [value] if value else []
        for value in section.get("ExecStart", []):
            service.exec_start = service.exec_start + [value] if value else []
    return service
