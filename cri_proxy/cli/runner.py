"""The one way a command runs: logging configured once, the event loop chosen once (uvloop
where available), and errors turned into exit codes in one place.

Exit status: what the command returns (0 unless it says otherwise; `replay` returns 1 when
something differed); 2 and one line `cri-proxy: error: ...` on stderr for a CriProxyError
(bad input the command can name); 130 for Ctrl-C; 0, quietly, when stdout is closed under
us (`cri-proxy query ... | head`). Usage errors (an unknown flag, a bad choice) are click's:
a usage line and exit 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Optional, Union

import typer

from cri_proxy.cli.options import LogLevel
from cri_proxy.model.errors import CriProxyError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

Outcome = Union[int, None, Coroutine[Any, Any, Optional[int]]]


def configure_logging(level: LogLevel) -> None:
    """Log to stderr at `level`. basicConfig does nothing when the root logger already has a
    handler, so this takes effect once per process (and leaves a test runner's own alone)."""
    logging.basicConfig(level=level.value.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip


def run_loop(coro: Coroutine[Any, Any, Optional[int]]) -> Optional[int]:
    """Runs `coro` on uvloop where available (the relay's socket I/O is several times cheaper
    on it), else on asyncio's default loop. Both are imported here, by the commands that run
    a loop, so the others (and --help) start without asyncio (a third of the CLI's imports)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        import asyncio

        return asyncio.run(coro)
    return uvloop.run(coro)


def fail(message: object) -> int:
    """Prints the one error line; returns the exit status that goes with it."""
    typer.echo(f"cri-proxy: error: {message}", err=True)
    return EXIT_ERROR


def _quiet_stdout() -> None:
    """After a broken pipe, Python would complain again flushing stdout at exit: point it at
    /dev/null (when it is a real file descriptor at all)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def outcome_code(main: Callable[[], Outcome]) -> int:
    """Runs `main` (a coroutine it returns runs on the event loop) and maps what it raised."""
    try:
        outcome = main()
        code = run_loop(outcome) if isinstance(outcome, Coroutine) else outcome
        return int(code or 0)
    except CriProxyError as exc:
        return fail(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return 0


def execute(main: Callable[[], Outcome], log_level: LogLevel = LogLevel.warning) -> None:
    """Every command's body runs through here; a non-zero status leaves as typer.Exit."""
    configure_logging(log_level)
    code = outcome_code(main)
    if code:
        raise typer.Exit(code)
