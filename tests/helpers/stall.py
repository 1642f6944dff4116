"""A unix socket in front of a runtime that can stall: it accepts a connection and never answers.

`stall` says how many of the next connections are held unanswered (all of them for a hung
runtime); the others are relayed byte for byte to `backend`. Every connection is kept in
`connections` with the bytes it sent, so a test can tell whose connection arrived when.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
from dataclasses import dataclass, field


@dataclass
class Seen:
    accepted: float  # time.monotonic() at accept
    stalled: bool
    received: bytearray = field(default_factory=bytearray)


class StallingFront:
    def __init__(self, path: pathlib.Path, backend: pathlib.Path | None = None, stall: float = 0) -> None:
        self.path, self.backend, self.stall = path, backend, stall
        self.connections: list[Seen] = []
        self._changed = asyncio.Event()  # a connection arrived or sent something
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> StallingFront:
        self._server = await asyncio.start_unix_server(self._accept, str(self.path))
        return self

    async def any_change(self) -> None:
        """Return once a connection arrived or sent bytes since the last call."""
        await self._changed.wait()
        self._changed.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stalled = self.stall > 0 or self.backend is None
        if self.stall > 0:
            self.stall -= 1
        seen = Seen(time.monotonic(), stalled)
        self.connections.append(seen)
        self._changed.set()
        task = asyncio.get_running_loop().create_task(self._serve(seen, reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if seen.stalled:
                while chunk := await reader.read(65536):  # read, never answer
                    seen.received += chunk
                    self._changed.set()
                return
            assert self.backend is not None
            back_reader, back_writer = await asyncio.open_unix_connection(str(self.backend))
            try:
                await asyncio.gather(self._pipe(reader, back_writer, seen), self._pipe(back_reader, writer, None))
            finally:
                back_writer.close()
        except OSError:
            pass
        finally:
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen | None) -> None:
        while chunk := await reader.read(65536):
            if seen is not None:
                seen.received += chunk
                self._changed.set()
            writer.write(chunk)
            await writer.drain()
        writer.close()
