"""Translation between CRI versions: the bridge the front door routes to when the client's
version differs from the runtime's, or when the proxy must answer a call itself.

`Bridge` loads grpcio; it is imported on first use so that a proxy that never needs the
bridge never pays for it (memory and threads). The bridge probes nothing itself: it is given
the proxy's version prober (cri_proxy.proxy.prober) and reads its answers.
"""

from typing import TYPE_CHECKING, Any

from cri_proxy.bridge.options import BridgeOptions, needs_bridge

if TYPE_CHECKING:
    from cri_proxy.bridge.bridge import Bridge

__all__ = ["Bridge", "BridgeOptions", "needs_bridge"]


def __getattr__(name: str) -> Any:
    if name == "Bridge":
        from cri_proxy.bridge.bridge import Bridge

        return Bridge
    raise AttributeError(name)
