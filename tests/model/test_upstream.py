"""cri_proxy/model/upstream.py: what each upstream speaks, as one frozen answer."""

from __future__ import annotations

import dataclasses

import pytest

from cri_proxy.model.upstream import EVENTS_MISSING, EVENTS_NATIVE, UNKNOWN, UpstreamApis, service_key


def test_service_key() -> None:
    assert service_key("ImageService") == "image"
    assert service_key("RuntimeService") == "runtime"
    assert service_key("Health") == "runtime"


def test_unknown_before_any_probe() -> None:
    assert not UNKNOWN.known
    assert UNKNOWN.preferred is None
    assert UNKNOWN.preferred_for("image") is None
    assert UNKNOWN.runtime_api is None and UNKNOWN.image_api is None
    assert UNKNOWN.describe() == "CRI version not known yet"


def test_one_socket_for_both_services() -> None:
    apis = UpstreamApis(runtime=("v1", "v1alpha2"), image=("v1", "v1alpha2"), events=EVENTS_NATIVE)
    assert apis.known and apis.preferred == "v1"
    assert apis.speaks("image") == ("v1", "v1alpha2")
    assert apis.runtime_api == "v1,v1alpha2"
    assert apis.describe() == "CRI v1 and v1alpha2, container events native"


def test_image_side_that_differs_is_described() -> None:
    apis = UpstreamApis(runtime=("v1alpha2",), image=("v1",), events=EVENTS_MISSING)
    assert apis.preferred_for("image") == "v1"
    assert apis.preferred_for("runtime") == "v1alpha2"
    assert apis.describe() == "CRI v1alpha2 (images: CRI v1), container events missing"
    assert UpstreamApis(runtime=("v1",)).describe() == "CRI v1 (images: CRI unknown)"


def test_an_answer_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        UNKNOWN.runtime = ("v1",)  # type: ignore[misc]
