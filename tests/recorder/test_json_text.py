"""cri_proxy/recorder/json_text.py: a large List*/Stats reply's stored JSON, element by element,
is the very text the whole-tree way writes; other shapes go that way; the writer stores it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cri_proxy.messages.decode import decode_message, message_class
from cri_proxy.recorder import json_text
from tests.helpers.calls import make_call, record, rows

STATS = "/runtime.v1.RuntimeService/ListContainerStats"


def _stats_reply(n: int, api: str = "v1") -> bytes:
    path = STATS.replace("v1", api, 1)
    cls = message_class(path, "response")
    assert cls is not None
    reply = cls()
    for i in range(n):
        stats = reply.stats.add()
        stats.attributes.id = f"{i:064x}"
        stats.attributes.metadata.name = f"c-{i}"
        stats.attributes.labels.update({"io.kubernetes.pod.name": f"pod-{i}", "é": "ünïcode \"quoted\"\n"})
        stats.cpu.timestamp = 1_700_000_000_000_000_000 + i
        stats.cpu.usage_core_nano_seconds.value = 10**12 + i
        stats.memory.working_set_bytes.value = i  # 0 for the first: a wrapper at its default
    return reply.SerializeToString()


def _plain(path: str, data: bytes) -> str:
    return json_text.dumps(decode_message(path, "response", data))


@pytest.mark.parametrize("api", ["v1", "v1alpha2"])
def test_a_stats_reply_streams_to_the_same_text(api: str) -> None:
    path = STATS.replace("v1", api, 1)
    data = _stats_reply(500, api)
    assert len(data) > json_text.STREAM_MIN_BYTES
    text = json_text.stream(path, "response", data)
    assert text is not None and text == _plain(path, data)


def test_several_lists_keep_protobuf_field_order() -> None:
    path = "/runtime.v1.ImageService/ImageFsInfo"
    cls = message_class(path, "response")
    assert cls is not None
    reply = cls()
    for i in range(3):
        reply.container_filesystems.add().used_bytes.value = i + 1  # field 2, filled first
        reply.image_filesystems.add().fs_id.mountpoint = f"/var/lib/{i}"
    data = reply.SerializeToString()
    text = json_text.stream(path, "response", data)
    assert text == _plain(path, data)
    assert text is not None and text.index("image_filesystems") < text.index("container_filesystems")


@pytest.mark.parametrize("path, data", [
    (STATS, b""),  # nothing set: "{}", as the plain way
    ("/runtime.v1.RuntimeService/ListContainers", b""),
])
def test_empty_replies_stream_to_an_empty_object(path: str, data: bytes) -> None:
    assert json_text.stream(path, "response", data) == _plain(path, data) == "{}"


@pytest.mark.parametrize("path, direction, data", [
    ("/runtime.v1.RuntimeService/Version", "response", b"\x0a\x020.1"),  # a string field, not a list
    ("/runtime.v1.RuntimeService/ListContainers", "request", b"\x0a\x02\x0a\x00"),  # filter: one message
    (STATS, "response", b"\x0a\x05\xff\xff"),  # does not parse
    ("/grpc.health.v1.Health/Check", "response", b""),  # not CRI
])
def test_other_shapes_are_left_to_the_plain_way(path: str, direction: str, data: bytes) -> None:
    assert json_text.stream(path, direction, data) is None


def test_the_writer_stores_a_large_reply_with_the_same_json(tmp_path: Path) -> None:
    data = _stats_reply(2000)
    assert len(data) > 4 * json_text.STREAM_MIN_BYTES
    call = make_call("ListContainerStats", {}, data)
    record(tmp_path / "calls.db", [call])
    stored: list[tuple[Any, ...]] = rows(tmp_path / "calls.db", "SELECT json, data FROM payloads WHERE size = ?",
                                         len(data))
    assert stored == [(_plain(STATS, data), data)]
