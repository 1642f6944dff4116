"""cri_proxy/model/errors.py: the exception tree the CLI maps to one line and exit status 2."""

from __future__ import annotations

import pytest

from cri_proxy.model.endpoints import unix_path
from cri_proxy.model.errors import ConfigError, CriProxyError, SocketInUseError, StorageError


@pytest.mark.parametrize("kind", [ConfigError, SocketInUseError, StorageError])
def test_every_reported_error_is_a_cri_proxy_error(kind: type[Exception]) -> None:
    assert issubclass(kind, CriProxyError)
    assert not issubclass(CriProxyError, kind)


def test_the_branches_are_distinct() -> None:
    # the CLI and callers catch one kind without swallowing another
    assert not issubclass(ConfigError, StorageError)
    assert not issubclass(StorageError, ConfigError)
    assert not issubclass(SocketInUseError, ConfigError)


def test_a_real_config_error_is_caught_as_the_base() -> None:
    with pytest.raises(CriProxyError) as caught:
        unix_path("tcp://127.0.0.1:1234")
    assert type(caught.value) is ConfigError
    assert "\n" not in str(caught.value)
