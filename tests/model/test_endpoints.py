"""cri_proxy/model/endpoints.py: unix:// endpoints parsed into socket paths, bad ones refused."""

from __future__ import annotations

import pathlib

import pytest

from cri_proxy.model.endpoints import MAX_SOCKET_PATH, as_endpoint, unix_path
from cri_proxy.model.errors import ConfigError


def test_unix_endpoint_and_bare_path() -> None:
    assert unix_path("unix:///run/containerd/containerd.sock") == pathlib.Path("/run/containerd/containerd.sock")
    assert unix_path("  /var/run/crio/crio.sock \n") == pathlib.Path("/var/run/crio/crio.sock")


def test_round_trip_through_as_endpoint() -> None:
    path = pathlib.Path("/run/cri-proxy/cri-proxy.sock")
    assert as_endpoint(path) == "unix:///run/cri-proxy/cri-proxy.sock"
    assert unix_path(as_endpoint(path)) == path


@pytest.mark.parametrize("endpoint", ["unix://run/x.sock", "run/x.sock", "./x.sock", ""])
def test_relative_paths_are_refused(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="expected unix:///absolute/path.sock"):
        unix_path(endpoint)


def test_other_schemes_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"only unix:// sockets are supported, not tcp://"):
        unix_path("tcp://127.0.0.1:10010", "--runtime-endpoint")


def test_the_error_names_the_flag_and_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        unix_path("relative.sock", "--listen")
    assert str(caught.value).startswith("--listen 'relative.sock': ")


def test_socket_path_length_limit() -> None:
    longest = "/" + "a" * (MAX_SOCKET_PATH - 1)
    assert unix_path(longest) == pathlib.Path(longest)
    with pytest.raises(ConfigError, match=f"longer than {MAX_SOCKET_PATH} bytes"):
        unix_path(longest + "a")


def test_the_limit_counts_bytes_not_characters() -> None:
    # "é" is two bytes in UTF-8: 54 of them are 108 bytes, over sun_path's limit
    with pytest.raises(ConfigError, match="longer than"):
        unix_path("/" + "é" * 54)
