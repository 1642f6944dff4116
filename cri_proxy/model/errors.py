"""The project's exceptions.

    CriProxyError
     ├── ConfigError       a flag, endpoint or path the user gave cannot work (one clear line)
     ├── SocketInUseError  another live process already serves the listen socket
     └── StorageError      a recording database cannot be used (newer format, corrupt, unreadable)

The CLI turns every CriProxyError into one line on stderr and exit status 2; anything else
is a bug and keeps its traceback.
"""


class CriProxyError(Exception):
    """Base of the errors the CLI reports as one line."""


class ConfigError(CriProxyError):
    """A flag, endpoint or path that cannot work."""


class SocketInUseError(CriProxyError):
    """The listen socket is live: another proxy (or something else) is serving it."""


class StorageError(CriProxyError):
    """A recording database cannot be opened or used: written by a newer version, corrupt, unreadable."""
