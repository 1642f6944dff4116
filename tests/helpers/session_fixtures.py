"""The session-wide fixtures, registered once for the whole suite by tests/conftest.py.

A `scope="session"` fixture imported into a test module is a new fixture of that module:
pytest keeps one cache per definition, so each importing module rebuilt it (a recording made
through a proxy subprocess, or a containerd started and stopped, once per module). Found
here, by name, they are made once per session as their docstrings say; tests only read them.
"""

from __future__ import annotations

from tests.helpers.containerd_fixtures import containerd
from tests.helpers.probes import probe_recording
from tests.helpers.recordings import recording, recording_master

__all__ = ["containerd", "probe_recording", "recording", "recording_master"]
