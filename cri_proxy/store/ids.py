"""The ids a call concerns (pod sandbox, container, image, pod name), read from decoded messages.

Works on the dicts the decoder produces, whether it keeps the proto field names
(`pod_sandbox_id`) or uses protobuf's JSON names (`podSandboxId`). Extraction looks only at
field names, never at the method, so it can be cached per payload: requests give ids first,
responses fill what requests lack (RunPodSandbox's and CreateContainer's new ids, PullImage's
image_ref).
"""

from __future__ import annotations

from typing import Any

FIELDS = ("pod_sandbox_id", "pod_name", "pod_namespace", "container_id", "container_name", "image", "image_ref")

_POD_NAME = "io.kubernetes.pod.name"
_POD_NAMESPACE = "io.kubernetes.pod.namespace"
_CONTAINER_NAME = "io.kubernetes.container.name"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _get(obj: Any, name: str) -> Any:
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    return obj.get(_camel(name)) if value is None else value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def message_ids(message: dict[str, Any] | None) -> dict[str, str]:
    """The ids one decoded message names."""
    found: dict[str, str] = {}
    if not isinstance(message, dict):
        return found

    def put(key: str, value: Any) -> None:
        text = _text(value)
        if text is not None and key not in found:
            found[key] = text

    put("pod_sandbox_id", _get(message, "pod_sandbox_id"))
    put("pod_sandbox_id", _get(_get(message, "filter"), "pod_sandbox_id"))
    put("container_id", _get(message, "container_id"))
    put("image_ref", _get(message, "image_ref"))
    for holder in ("config", "sandbox_config", "status"):
        part = _get(message, holder)
        if not isinstance(part, dict):
            continue
        metadata = _get(part, "metadata")
        if isinstance(metadata, dict):
            if _get(metadata, "namespace") is not None:  # PodSandboxMetadata
                put("pod_name", _get(metadata, "name"))
                put("pod_namespace", _get(metadata, "namespace"))
            else:  # ContainerMetadata
                put("container_name", _get(metadata, "name"))
        labels = _get(part, "labels")
        if isinstance(labels, dict):
            put("pod_name", labels.get(_POD_NAME))
            put("pod_namespace", labels.get(_POD_NAMESPACE))
            put("container_name", labels.get(_CONTAINER_NAME))
        put("image", _get(_get(part, "image"), "image"))
        put("image_ref", _get(part, "image_ref"))
    put("image", _get(_get(message, "image"), "image"))  # ImageSpec of the image service
    return found


def call_ids(request: dict[str, str], response: dict[str, str]) -> dict[str, str]:
    """Request ids first, the response's where the request named none."""
    merged = dict(response)
    merged.update(request)
    return merged
