"""The runtime's side of a translating connection (proxy/responses.py), chunk by chunk."""

from __future__ import annotations

import pathlib

import pytest
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame, SettingsFrame

from cri_proxy.faults.book import FaultBook
from cri_proxy.faults.rules import parse_rules
from cri_proxy.h2 import frames as h2
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.proxy.bodyfaults import BodyFaults
from cri_proxy.proxy.podfacts import FactTable
from cri_proxy.proxy.responses import ResponseRelay
from cri_proxy.proxy.server import RelayServer

pytestmark = pytest.mark.timeout(30)

KEPT = [SettingsFrame(0, settings={h2.SETTINGS_HEADER_TABLE_SIZE: 100, 0x4: 1 << 20}).serialize(),
        HeadersFrame(1, b"\x88", flags=["END_HEADERS"]).serialize(),
        DataFrame(1, b"\0\0\0\0\x03abc").serialize(),
        HeadersFrame(3, b"\x88\x40\x01a\x01b", flags=["END_HEADERS"]).serialize(),  # a hijacked stream's block
        HeadersFrame(1, b"\x89", flags=["END_HEADERS", "END_STREAM"]).serialize()]
DROPPED = [DataFrame(3, b"x" * 300).serialize(), RstStreamFrame(3).serialize()]


def stream() -> tuple[bytes, bytes]:
    """The runtime's bytes, and what the client must get of them."""
    sent = KEPT[0] + KEPT[1] + DROPPED[0] + KEPT[2] + KEPT[3] + DROPPED[1] + KEPT[4]
    return sent, b"".join(KEPT)


@pytest.mark.parametrize("size", [1, 5, 9, 10, 17, 64, 1000])
async def test_chunks_of_any_size_come_out_whole_minus_the_answered_stream(sock_dir: pathlib.Path, size: int) -> None:
    server = RelayServer(sock_dir / "p.sock", sock_dir / "rt.sock")
    conn = server._new_connection(1)
    conn.open_streams.update({1, 3})
    sizes: list[int] = []
    relay = ResponseRelay(conn, {3}, sizes.append)
    sent, expected = stream()
    out, boundaries = b"", []
    for i in range(0, len(sent), size):
        boundaries.append(relay.can_inject())
        out += relay.feed(sent[i:i + size])
    assert out == expected
    assert sizes == [100]
    assert conn.open_streams == set()  # stream 1 ended, and the runtime reset 3 (its RST left out)
    assert b"".join(conn._held) == h2.window_update_frame(0, 300)  # the dropped DATA's window, back upstream
    assert relay.can_inject() and not relay.in_block
    assert boundaries[0]


async def test_a_chunk_with_nothing_left_out_is_forwarded_as_it_is(sock_dir: pathlib.Path) -> None:
    conn = RelayServer(sock_dir / "p.sock", sock_dir / "rt.sock")._new_connection(1)
    relay = ResponseRelay(conn, set(), lambda size: None)
    chunk = KEPT[1] + KEPT[2][:12]
    assert relay.feed(chunk) is chunk  # no copy on the common path
    assert not relay.can_inject()  # inside a frame: nothing of the proxy's may go in
    rest = KEPT[2][12:] + KEPT[4][:5]
    assert relay.feed(rest) == KEPT[2][12:]  # a frame header cut short waits until it is whole
    assert relay.can_inject()
    assert relay.feed(KEPT[4][5:]) == KEPT[4]


@pytest.mark.parametrize("size", [1, 9, 700, 1 << 20])
async def test_an_answer_read_for_pod_facts_is_learned_across_frames_and_passes_untouched(
        sock_dir: pathlib.Path, size: int) -> None:
    conn = RelayServer(sock_dir / "p.sock", sock_dir / "rt.sock")._new_connection(1)
    conn.open_streams.update({1, 3})
    book = FaultBook(parse_rules({"rules": [{"name": "ns", "match": {"namespace": "x"}, "action": "close"}]}, "t"))
    table = FactTable()
    facts = BodyFaults(book, table, None)
    facts.watch(1, "ListContainers", {})
    facts.watch(3, "RunPodSandbox", {"pod": "web", "namespace": "x"})
    relist = v1.ListContainersResponse(containers=[v1.Container(
        id=f"c{i}", pod_sandbox_id="p", metadata=v1.ContainerMetadata(name=f"n{i}"), annotations={"a": "b" * 300})
        for i in range(100)]).SerializeToString()
    message = b"\0" + len(relist).to_bytes(4, "big") + relist
    pieces = [message[i:i + 16384] for i in range(0, len(message), 16384)]
    sent = HeadersFrame(1, b"\x88", flags=["END_HEADERS"]).serialize()
    sent += DataFrame(1, pieces[0], flags=["PADDED"], pad_length=7).serialize()
    sent += b"".join(DataFrame(1, piece).serialize() for piece in pieces[1:])
    sent += HeadersFrame(1, b"\x89", flags=["END_HEADERS", "END_STREAM"]).serialize()
    created = v1.RunPodSandboxResponse(pod_sandbox_id="p9").SerializeToString()
    sent += DataFrame(3, b"\0" + len(created).to_bytes(4, "big") + created).serialize()
    relay = ResponseRelay(conn, set(), lambda size: None, facts)
    out = b"".join(relay.feed(sent[i:i + size]) for i in range(0, len(sent), size))
    assert out == sent
    assert len(table.containers) == 100 and table.containers["c99"] == {"sandbox_id": "p", "container": "n99"}
    assert table.sandboxes == {"p9": {"pod": "web", "namespace": "x"}}
    assert facts.replies == {}
