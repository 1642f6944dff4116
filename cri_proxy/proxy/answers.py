"""The responses the relay writes itself onto a client's stream, in place of the runtime's.

Translation answers some calls without the runtime (a method the runtime's CRI version
lacks, RuntimeConfig from --cgroup-driver, a refused request). The client's HPACK decoder
follows the runtime's encoder, which never sees these frames, so every field here is a
literal the receiver never stores (RFC 7541 §6.2.3): the client's dynamic table is left
exactly as the runtime's encoder believes it to be. An error is a trailers-only response
(one HEADERS frame with END_STREAM); a reply is HEADERS, one DATA frame, then trailers.
The statuses and texts are the bridge's (cri_proxy.bridge.bridge), so a client sees the
same answers whichever path served it.
"""

from __future__ import annotations

from typing import Final

from cri_proxy.h2 import frames as h2
from cri_proxy.h2.hpack_encoder import literal
from cri_proxy.model.status import StatusCode

_HEAD: Final = literal(":status", "200") + literal("content-type", "application/grpc")
# RuntimeConfigResponse{linux: LinuxRuntimeConfiguration{cgroup_driver}}, in wire format:
# field 1 (a message) holding field 1 (an enum varint); SYSTEMD is 0, so its message is empty.
RUNTIME_CONFIG: Final = {"systemd": b"\x0a\x00", "cgroupfs": b"\x0a\x02\x08\x01"}




def error(stream_id: int, code: int, message: str) -> bytes:
    """A trailers-only response ending `stream_id` with `code` and `message`."""
    block = _HEAD + literal("grpc-status", str(code)) + literal("grpc-message", h2.grpc_message_text(message))
    return h2.frame(h2.HEADERS, h2.FLAG_END_HEADERS | h2.FLAG_END_STREAM, stream_id, block)


def reply(stream_id: int, message: bytes) -> bytes:
    """A successful unary response carrying one uncompressed message."""
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    return (h2.frame(h2.HEADERS, h2.FLAG_END_HEADERS, stream_id, _HEAD)
            + h2.frame(h2.DATA, 0, stream_id, body)
            + h2.frame(h2.HEADERS, h2.FLAG_END_HEADERS | h2.FLAG_END_STREAM, stream_id, literal("grpc-status", "0")))


def lacking(stream_id: int, method: str, api: str, cgroup_driver: str | None) -> tuple[bytes, list[str]]:
    """The answer to a method the runtime's CRI `api` lacks, and the call's notes: RuntimeConfig
    from the cgroup driver when one is set, UNIMPLEMENTED otherwise (as the bridge answers)."""
    if method == "RuntimeConfig" and cgroup_driver in RUNTIME_CONFIG:
        return reply(stream_id, RUNTIME_CONFIG[cgroup_driver]), [f"answered by the proxy: cgroup driver {cgroup_driver}"]
    details = f"{method} is not available: the runtime speaks CRI {api}, which lacks it"
    if method == "RuntimeConfig":
        details += " (set the proxy's cgroup driver to have the proxy answer it)"
    return error(stream_id, StatusCode.UNIMPLEMENTED, details), [f"answered by the proxy: UNIMPLEMENTED ({api} runtime)"]


def data_length(answer: bytes) -> int:
    """The DATA payload bytes an answer carries: the client's connection window they take."""
    pos, total = 0, 0
    while pos + 9 <= len(answer):
        length = int.from_bytes(answer[pos:pos + 3], "big")
        if answer[pos + 3] == h2.DATA:
            total += length
        pos += 9 + length
    return total
