"""A tiny command interpreter for ExecSync, so exec probes and tests mean something.

Built-ins (a leading path such as /bin/ is ignored): `echo [-n] ARGS`, `true`, `false`,
`cat FILE` (only /etc/hostname exists), `hostname`, `pwd`, `env`, `sleep SECONDS`,
`exit N`, and `sh -c SCRIPT` where SCRIPT is built-ins joined by `;`, `&&` or `||`.
Anything else exits 127 with "not found" on stderr, as a shell would. Nothing is run on
the host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shlex


@dataclasses.dataclass
class ExecEnv:
    """What a command can see of its container."""

    hostname: str
    env: dict[str, str]
    working_dir: str = "/"


@dataclasses.dataclass
class ExecResult:
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0


class _Exit(Exception):
    """`exit N` ends the whole script."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


async def run_command(argv: list[str], env: ExecEnv) -> ExecResult:
    """Run one argv (no timeout here: the caller applies it)."""
    out: list[str] = []
    err: list[str] = []
    try:
        code = await _run_simple(argv, env, out, err)
    except _Exit as stop:
        code = stop.code
    return ExecResult("".join(out).encode(), "".join(err).encode(), code)


async def _run_simple(argv: list[str], env: ExecEnv, out: list[str], err: list[str]) -> int:
    if not argv:
        return 0
    name, args = argv[0].rsplit("/", 1)[-1], argv[1:]
    if name == "echo":
        newline = True
        if args[:1] == ["-n"]:
            newline, args = False, args[1:]
        out.append(" ".join(args) + ("\n" if newline else ""))
        return 0
    if name in ("true", ":"):
        return 0
    if name == "false":
        return 1
    if name == "hostname":
        out.append(env.hostname + "\n")
        return 0
    if name == "pwd":
        out.append(env.working_dir + "\n")
        return 0
    if name == "env":
        out.extend(f"{k}={v}\n" for k, v in env.env.items())
        return 0
    if name == "cat":
        return _cat(args, env, out, err)
    if name == "sleep":
        return await _sleep(args, err)
    if name == "exit":
        raise _Exit(_int_arg(args, 0))
    if name in ("sh", "bash", "ash") and args[:1] == ["-c"] and len(args) >= 2:
        return await _run_script(args[1], env, out, err)
    err.append(f"sh: {argv[0]}: not found\n")
    return 127


def _int_arg(args: list[str], default: int) -> int:
    try:
        return int(args[0]) & 0xFF if args else default
    except ValueError:
        return 2


def _cat(args: list[str], env: ExecEnv, out: list[str], err: list[str]) -> int:
    code = 0
    for path in args:
        if path == "/etc/hostname":
            out.append(env.hostname + "\n")
        else:
            err.append(f"cat: can't open '{path}': No such file or directory\n")
            code = 1
    return code


async def _sleep(args: list[str], err: list[str]) -> int:
    try:
        seconds = float(args[0]) if args else 0.0
    except ValueError:
        err.append(f"sleep: invalid number '{args[0]}'\n")
        return 1
    await asyncio.sleep(seconds)
    return 0


async def _run_script(script: str, env: ExecEnv, out: list[str], err: list[str]) -> int:
    """Run `cmd1 ; cmd2 && cmd3 || cmd4`, left to right, with shell short-circuiting."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    tokens = list(lexer)
    code, pending_op = 0, ";"
    current: list[str] = []
    for tok in tokens + [";"]:
        if tok in (";", "&&", "||"):
            if not current:
                pending_op = tok if tok != ";" else pending_op
                continue
            if pending_op == ";" or (pending_op == "&&") == (code == 0):
                code = await _run_simple(current, env, out, err)
            current, pending_op = [], tok
        else:
            current.append(tok)
    return code
