"""The ids a recorded CRI call concerns, read from its decoded request and response.

The writer stores them in columns so that "everything that happened to this pod" is an
indexed query rather than a JSON scan. Only what a call states outright is taken:

- request `pod_sandbox_id` / `container_id` (the lifecycle, status, stats, exec calls);
- RunPodSandbox: pod name and namespace from `config.metadata`, the id from the response;
- CreateContainer: the pod from `sandbox_config.metadata` (its `config.metadata` names the
  container, not the pod), the image from `config.image.image`, the id from the response;
- PodSandboxStatus: the pod name and namespace from the response's `status.metadata`;
- image calls: `image.image` from the request; PullImage's response `image_ref` wins over
  the requested name, because the ref is what the kubelet passes on to CreateContainer and
  RemoveImage (a failed pull, with no response, keeps the requested name).

List* and Stream* calls concern many objects: their filters are not taken (all None). The
decoded JSON may be None (no message) or the undecodable marker; both give nothing.

The same peer reads ExecSync's `exit_code` (`exec_exit_code`): an exec probe that exits
non-zero has failed although its call ended OK, and a column makes that visible to every view.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from cri_proxy.model.call import Direction
from cri_proxy.model.cri import CallPath, parse_path

_REQUEST, _RESPONSE = Direction.REQUEST, Direction.RESPONSE  # bound once: a member off its class is a metaclass lookup

if TYPE_CHECKING:  # the stage's item; not imported at run time so store/rows.py stays light
    from cri_proxy.recorder.prepared import PreparedCall

ID_KEYS = ("pod_sandbox_id", "container_id", "image", "pod_name", "pod_namespace")

Ids = dict[str, str | None]


def call_ids(
    path: str, request_json: dict[str, Any] | None, response_json: dict[str, Any] | None
) -> Ids:
    """The `ID_KEYS` of a call, each a non-empty string or None."""
    parts = parse_path(path)
    if not _concerns(parts):
        return dict.fromkeys(ID_KEYS)
    return _ids(parts.method, request_json, response_json)


def _ids(method: str, request_json: dict[str, Any] | None, response_json: dict[str, Any] | None) -> Ids:
    ids: Ids = dict.fromkeys(ID_KEYS)
    req = request_json or {}
    resp = response_json or {}
    ids["pod_sandbox_id"] = _text(req, "pod_sandbox_id")
    ids["container_id"] = _text(req, "container_id")
    ids["image"] = _text(req, "image", "image")
    if method == "RunPodSandbox":
        _pod_names(ids, req, "config", "metadata")
        ids["pod_sandbox_id"] = _text(resp, "pod_sandbox_id") or ids["pod_sandbox_id"]
    elif method == "CreateContainer":
        _pod_names(ids, req, "sandbox_config", "metadata")
        ids["image"] = _text(req, "config", "image", "image")
        ids["container_id"] = _text(resp, "container_id")
    elif method == "PullImage":
        ids["image"] = _text(resp, "image_ref") or ids["image"]
    elif method == "PodSandboxStatus":
        _pod_names(ids, resp, "status", "metadata")
    return ids


def concerns_ids(path: str) -> bool:
    """Whether a call on `path` can name ids at all (so its messages are worth decoding)."""
    return _concerns(parse_path(path))


def _concerns(parts: CallPath) -> bool:
    return parts.is_cri and not parts.method.startswith(("List", "Stream"))


def exec_exit_code(method: str, response_json: dict[str, Any] | None) -> int | None:
    """ExecSync's exit code from its decoded response; None for other methods and for a call
    without a decoded answer. Protobuf's JSON leaves out a field at its default, so an answer
    without `exit_code` exited 0 (the same rule as storage/migrations/0005_exit_code.sql)."""
    # "_error" is messages/decode.py's undecodable marker (not imported: it loads protobuf).
    if method != "ExecSync" or response_json is None or "_error" in response_json:
        return None
    value = response_json.get("exit_code", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# The methods whose response names an id (or, ExecSync, the exit code): only theirs are decoded.
_RESPONSE_READ = frozenset({"RunPodSandbox", "CreateContainer", "PullImage", "PodSandboxStatus", "ExecSync"})
# The request fields _ids reads from (at the top of the message).
_REQUEST_FIELDS = ("pod_sandbox_id", "container_id", "image", "config", "sandbox_config")


@functools.lru_cache(maxsize=512)
def _request_read(path: str) -> bool:
    """Whether a request on `path` has a field `_ids` reads (else decoding it gives nothing)."""
    from cri_proxy.messages.decode import method_types  # protobuf: loaded in the recorder anyway

    types = method_types(path)
    if types is None:
        return True
    names = types.request.DESCRIPTOR.fields_by_name
    return any(name in names for name in _REQUEST_FIELDS)


class IdsStage:
    """The pipeline's ids peer: the call's own first request and response, decoded (only
    those that can name an id: a Version call's messages are not decoded for it)."""

    name = "ids"

    def __init__(self) -> None:
        self._plans: dict[str, tuple[str, bool, bool] | None] = {}  # path -> what to read, None: nothing

    def process(self, item: PreparedCall) -> PreparedCall:
        path = item.call.path
        try:
            plan = self._plans[path]
        except KeyError:
            if len(self._plans) >= MAX_PATHS:  # paths are the clients' to choose: bounded
                self._plans.clear()
            plan = self._plans[path] = _plan(path)
        if plan is None:
            item.ids = NO_IDS
            return item
        method, request, response = plan  # only then are the messages decoded (List* answers are the big ones)
        response_json = item.first(_RESPONSE) if response else None
        item.ids = _ids(method, item.first(_REQUEST) if request else None, response_json)
        item.exit_code = exec_exit_code(method, response_json)
        return item


MAX_PATHS = 1024
# The ids of a call that names none. Shared by such calls: never modified.
NO_IDS: Ids = dict.fromkeys(ID_KEYS)


def _plan(path: str) -> tuple[str, bool, bool] | None:
    """(method, whether its request is read, whether its response is) for a path whose calls
    can name an id, else None (so its calls are given NO_IDS without a look)."""
    parts = parse_path(path)
    if not _concerns(parts):
        return None
    request, response = _request_read(path), parts.method in _RESPONSE_READ
    return (parts.method, request, response) if request or response else None


def _pod_names(ids: Ids, doc: dict[str, Any], *keys: str) -> None:
    ids["pod_name"] = _text(doc, *keys, "name")
    ids["pod_namespace"] = _text(doc, *keys, "namespace")


def _text(doc: dict[str, Any], *keys: str) -> str | None:
    """doc[k1][k2]... when every step is present and the end is a non-empty string."""
    value: Any = doc
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, str) and value else None
