"""The proxy's own answers on a translating connection (proxy/answering.py): written onto the
client's stream with literals that leave the client's HPACK table as the runtime's encoder
believes it to be, the request never forwarded.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from hpack import Encoder
from hyperframe.frame import DataFrame, HeadersFrame

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from tests.helpers.h2upstream import H2Upstream
from tests.helpers.rawh2 import RawClient, Reply, grpc_message, hello, request_headers
from tests.helpers.translated import VERSION

pytestmark = pytest.mark.timeout(60)


def answered(sock: str) -> tuple[list[Reply], list[object], list[object]]:
    """Calls, then two the proxy answers itself, then one more; and the client's table around them."""
    encoder, replies = Encoder(), []
    paths = [VERSION, VERSION, "/runtime.v1.RuntimeService/StreamContainers",
             "/runtime.v1.RuntimeService/RuntimeConfig", VERSION]
    with RawClient(sock) as client:
        client.send(hello())
        tables = []
        for i, path in enumerate(paths):
            sid = 2 * i + 1
            if i == 2:
                tables.append(list(client.decoder.header_table.dynamic_entries))
            client.send(HeadersFrame(sid, encoder.encode(request_headers(path)), flags=["END_HEADERS"]).serialize()
                        + DataFrame(sid, grpc_message(b""), flags=["END_STREAM"]).serialize())
            replies.append(client.read_reply(sid))
            if i == 3:
                tables.append(list(client.decoder.header_table.dynamic_entries))
    return replies, tables[0], tables[1]


async def test_the_proxys_own_answers_leave_the_clients_table_alone(relayed: tuple[str, H2Upstream]) -> None:
    sock, upstream = relayed
    replies, before, after = await asyncio.to_thread(answered, sock)
    assert before and before == after
    streamed, config = replies[2], replies[3]
    assert streamed.grpc_status == str(grpc.StatusCode.UNIMPLEMENTED.value[0])
    assert "StreamContainers is not available: the runtime speaks CRI v1alpha2" in dict(streamed.headers)["grpc-message"]
    assert config.grpc_status == "0"
    assert v1.RuntimeConfigResponse.FromString(config.data[5:]).linux.cgroup_driver == v1.CGROUPFS
    assert dict(replies[4].headers)["x-served-path"] == "/runtime.v1alpha2.RuntimeService/Version"
    assert [dict(r.headers)[":path"] for r in upstream.requests] == ["/runtime.v1alpha2.RuntimeService/Version"] * 3
