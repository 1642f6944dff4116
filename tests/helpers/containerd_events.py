"""containerd's own event stream (`ctr events`), read on a thread, for the tests that must wait
for what containerd did rather than for what shows in /proc.

A process shows in /proc as soon as runc has started it, before the shim has told containerd
(the shim learns the pid when `runc exec` returns): a call cancelled in that window meets a
containerd that cannot yet kill the exec. `/tasks/exec-started` is published once the shim
holds the pid, so a test that waits for it cancels an exec containerd can kill.
"""

from __future__ import annotations

import json
import pathlib
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

EXEC_STARTED = "/tasks/exec-started"


class Events:
    """The events of one containerd from the moment `ctr events` subscribed; `close()` ends it."""

    def __init__(self, sock: pathlib.Path) -> None:
        self.proc = subprocess.Popen(["ctr", "--address", str(sock), "events"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="ctr-events", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def wait(self, topic: str, container_id: str, timeout: float) -> dict[str, Any] | None:
        """The next event of `topic` about `container_id` (its JSON body), or None by `timeout`.
        A line reads `<time> <namespace> <topic> <json>`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                return None
            fields = line.split(" ")
            if topic in fields and "{" in line:
                body: dict[str, Any] = json.loads(line[line.index("{"):])
                if body.get("container_id") == container_id:
                    return body
        return None

    def subscribed(self, container_id: str, start_exec: Callable[[], object], timeout: float = 20) -> bool:
        """Whether `ctr events` is subscribed: it is once an exec that `start_exec` runs in the
        container shows as started (one that ran before the subscription shows nothing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            start_exec()
            if self.wait(EXEC_STARTED, container_id, 1.0) is not None:
                return True
        return False

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
