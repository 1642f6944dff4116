"""What the bridge says itself instead of forwarding: the replies for methods the runtime's
version lacks (RuntimeConfig from the configured cgroup driver, UNIMPLEMENTED otherwise),
and the checks on a v1 request bound for a v1alpha2 runtime (refuse what it would reject
opaquely, warn about the fields it would drop). A refusal is raised as `Refused`, which
bridge.Bridge turns into the call's status.
"""

from __future__ import annotations

import logging

import grpc
from google.protobuf.message import DecodeError

from cri_proxy.bridge import checks
from cri_proxy.bridge.recording import CallLog
from cri_proxy.messages.decode import method_types
from cri_proxy.model.call import Direction
from cri_proxy.pb.runtime.v1 import api_pb2 as v1

log = logging.getLogger(__name__)

CGROUP_DRIVERS = {"systemd": v1.SYSTEMD, "cgroupfs": v1.CGROUPFS}


class Refused(Exception):
    """The bridge answers the call itself with this status instead of forwarding it."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


def answer(call: CallLog, api: str, method: str, cgroup_driver: str | None) -> bytes:
    """The reply the proxy gives itself for a method the runtime's version lacks."""
    if method == "RuntimeConfig" and cgroup_driver is not None:
        reply = v1.RuntimeConfigResponse(linux=v1.LinuxRuntimeConfiguration(
            cgroup_driver=CGROUP_DRIVERS[cgroup_driver])).SerializeToString()
        call.note(f"answered by the proxy: cgroup driver {cgroup_driver}")
        call.status(grpc.StatusCode.OK, None)
        call.add(Direction.RESPONSE, reply)
        return reply
    details = f"{method} is not available: the runtime speaks CRI {api}, which lacks it"
    if method == "RuntimeConfig":
        details += " (set the proxy's cgroup driver to have the proxy answer it)"
    call.note(f"answered by the proxy: UNIMPLEMENTED ({api} runtime)")
    raise Refused(grpc.StatusCode.UNIMPLEMENTED, details)

def check(call: CallLog, path: str, request: bytes, strict: bool) -> None:
    """Refuse what a v1alpha2 runtime would reject opaquely; warn about what it would drop."""
    types = method_types(path)
    if types is None:
        return
    try:
        found = checks.inspect(types.request.FromString(request))
    except DecodeError as exc:  # not ours to judge: the runtime answers it as it would
        call.note(f"request did not parse as v1, forwarded unchecked: {exc}")
        return
    if found.bad_utf8:
        call.note(f"refused: env values not valid UTF-8: {', '.join(found.bad_utf8)}")
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                      "environment variable values must be valid UTF-8 for a CRI v1alpha2 "
                      f"runtime: {', '.join(found.bad_utf8)}")
    if not found.dropped:
        return
    fields = ", ".join(found.dropped)
    if strict and found.security:
        call.note(f"refused (strict): v1-only fields set: {', '.join(found.security)}")
        raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                      "the runtime speaks CRI v1alpha2 and would ignore these security-relevant "
                      f"fields: {', '.join(found.security)}")
    log.warning("call %d %s: the v1alpha2 runtime will ignore v1-only fields: %s",
                call.id, path, fields)
    call.note(f"v1-only fields ignored by the v1alpha2 runtime: {fields}")
