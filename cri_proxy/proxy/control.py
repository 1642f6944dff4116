"""The control socket: a running proxy's fault rules listed and changed (`cri-proxy faults
list|add|remove|clear`, `run --control unix:///PATH`).

The protocol is JSON lines over a unix stream socket, served in the relay's own event loop:
each request is one JSON object on one line, and each gets one JSON object on one line in
answer, in order, on the same connection (which may carry any number of them):

    {"op": "list"}
    {"op": "add", "rules": RULES, "source": "pull.yaml", "first": false}
    {"op": "remove", "name": "pull-fails"}
    {"op": "clear"}

RULES is what a rules file holds, as JSON data: `{"rules": [RULE, ...]}`, a list of rules, or
one rule on its own. Every answer is `{"ok": true, "message": TEXT, "rules": [...]}` or
`{"ok": false, "errors": [LINE, ...], "rules": [...]}`, `rules` being the rules loaded once the
request was served, in the order they are tried, each as `{"name", "match", "action",
"when", "line", "matched", "injected"}` (the counts so far). An `add` is checked as `run
--faults` checks a file, every problem on its own line naming the source and the rule, and
is refused whole on any of them (a name already loaded is one); added rules are tried after
the loaded ones, or before them with `"first": true`.

Nothing here blocks the relay: a request is at most `MAX_REQUEST` bytes of JSON (the client
reads YAML itself, so the relay never parses it from the socket), and what it changes is
swapped in at once (FaultBook.replace): the calls that start after the answer see the new
rules; calls under way keep what was decided for them. A SIGHUP reload of the `--faults`
file replaces the rules, changes made here included.

The socket is mode 0600 from the moment it exists (bound under umask 0177): only the
proxy's own user (root on a node) may change what the runtime seems to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pathlib
from collections.abc import AsyncIterator
from typing import Any, Final

from cri_proxy.faults.book import FaultBook
from cri_proxy.faults.describe import describe, describe_action, describe_when
from cri_proxy.faults.rules import FaultRule, FaultRulesError, parse_rules
from cri_proxy.model.endpoints import as_endpoint
from cri_proxy.model.errors import ConfigError
from cri_proxy.proxy.peer import credentials, process_name

log = logging.getLogger(__name__)

MODE: Final = 0o600
MAX_REQUEST: Final = 256 * 1024  # a rule is a few hundred bytes; a line longer than this is refused


class ControlServer:
    """Serves the control protocol (see the module's docstring) for one FaultBook."""

    def __init__(self, book: FaultBook, path: pathlib.Path) -> None:
        self.book = book
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen on `path` (free already: the daemon prepared it as it does the listen socket)."""
        old_umask = os.umask(0o177)  # no moment in which the socket is open to others
        try:
            self._server = await asyncio.start_unix_server(self._serve, str(self.path), limit=MAX_REQUEST)
        except OSError as exc:
            raise ConfigError(f"cannot listen on the control socket {self.path}: {exc.strerror}") from exc
        finally:
            os.umask(old_umask)
        os.chmod(self.path, MODE)
        log.info("control socket %s (mode %04o): `cri-proxy faults list|add|remove|clear --control %s`",
                 as_endpoint(self.path), MODE, as_endpoint(self.path))

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        who = _peer(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_REQUEST: the rest of it cannot be told from a next request
                    writer.write(_encode(self._refused([f"request longer than {MAX_REQUEST} bytes"])))
                    break
                if not line:
                    break
                if line.strip():
                    writer.write(_encode(self.handle(line, who)))
                    await writer.drain()
        except ConnectionError:
            pass  # the client went away before its answer: nothing was half-done
        finally:
            self._writers.discard(writer)
            writer.close()

    def handle(self, line: bytes, who: str = "a client") -> dict[str, Any]:
        """One request line's answer; a change is logged with who asked for it."""
        try:
            request = json.loads(line)
        except ValueError as exc:
            return self._refused([f"not a JSON object on one line: {exc}"])
        if not isinstance(request, dict):
            return self._refused(['expected a JSON object such as {"op": "list"}'])
        op = request.get("op")
        if op == "list":
            return self._answer(f"{len(self.book.rules)} rule(s)")
        if op == "add":
            return self._add(request, who)
        if op == "remove":
            return self._remove(request.get("name"), who)
        if op == "clear":
            count = len(self.book.rules)
            self.book.replace(())
            log.info("fault rules cleared through the control socket by %s: %d removed", who, count)
            return self._answer(f"{count} rule(s) removed")
        return self._refused([f"unknown op {op!r}: expected list, add, remove or clear"])

    def _add(self, request: dict[str, Any], who: str) -> dict[str, Any]:
        source = request.get("source")
        source = source if isinstance(source, str) and source else "control"
        try:
            added = checked_rules(request.get("rules"), source, self.book.rules)
        except FaultRulesError as exc:
            return self._refused(exc.problems)
        loaded = self.book.rules
        self.book.replace(added + loaded if request.get("first") is True else loaded + added)
        names = ", ".join(rule.name for rule in added)
        log.info("fault rules changed through the control socket by %s: added %s; %d rule(s) now",
                 who, names, len(self.book.rules))
        return self._answer(f"added {names}")

    def _remove(self, name: Any, who: str) -> dict[str, Any]:
        rules = self.book.rules
        if not any(rule.name == name for rule in rules):
            loaded = ", ".join(rule.name for rule in rules) or "none"
            return self._refused([f"no rule named {name!r} is loaded (loaded: {loaded})"])
        self.book.replace(tuple(rule for rule in rules if rule.name != name))
        log.info("fault rules changed through the control socket by %s: removed %s; %d rule(s) now",
                 who, name, len(self.book.rules))
        return self._answer(f"removed {name}")

    def _answer(self, message: str) -> dict[str, Any]:
        return {"ok": True, "message": message, "rules": self._rules()}

    def _refused(self, errors: list[str]) -> dict[str, Any]:
        return {"ok": False, "errors": errors, "rules": self._rules()}

    def _rules(self) -> list[dict[str, Any]]:
        counts = self.book.counts()
        return [{"name": rule.name, "match": {key: list(globs) for key, globs in rule.match},
                 "action": describe_action(rule), "when": describe_when(rule), "line": describe(index, rule),
                 "matched": counts[rule.name].matched, "injected": counts[rule.name].injected}
                for index, rule in enumerate(self.book.rules, 1)]


def checked_rules(data: Any, source: str, loaded: tuple[FaultRule, ...]) -> tuple[FaultRule, ...]:
    """The rules of an `add`, checked as `run --faults` checks a file; FaultRulesError with every
    problem (and a name already loaded is one)."""
    if isinstance(data, dict) and "rules" not in data:
        data = [data]  # one rule on its own
    items = data.get("rules") if isinstance(data, dict) else data
    names = {rule.name for rule in loaded}
    problems = [f"{source}: rule {index} ({item['name']}): a rule of that name is loaded already "
                f"(`cri-proxy faults remove {item['name']}` first)"
                for index, item in enumerate(items if isinstance(items, list) else [], 1)
                if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"] in names]
    try:
        rules = parse_rules(data, source)
    except FaultRulesError as exc:
        raise FaultRulesError(exc.problems + problems) from None
    if not rules and not problems:
        problems.append(f"{source}: no rules to add")
    if problems:
        raise FaultRulesError(problems)
    return rules


@contextlib.asynccontextmanager
async def serving(book: FaultBook | None, path: pathlib.Path | None) -> AsyncIterator[None]:
    """The control socket while the proxy runs (nothing without --control)."""
    if book is None or path is None:
        yield
        return
    server = ControlServer(book, path)
    await server.start()
    try:
        yield
    finally:
        await server.stop()


def _peer(writer: asyncio.StreamWriter) -> str:
    cred = credentials(writer.get_extra_info("socket"))
    if cred.pid is None:
        return "a client"
    return f"pid {cred.pid} ({process_name(cred.pid) or '?'}, uid {cred.uid})"


def _encode(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode() + b"\n"
