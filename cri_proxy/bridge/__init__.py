"""Translation between CRI versions: the bridge the front door routes to when the client's
version differs from the runtime's, or when the proxy must answer a call itself.

`Bridge` and `Negotiator` load grpcio; they are imported on first use so that a proxy that
never needs the bridge never pays for it (memory and threads).
"""

from typing import TYPE_CHECKING, Any

from cri_proxy.bridge.options import BridgeOptions, needs_bridge

if TYPE_CHECKING:
    from cri_proxy.bridge.bridge import Bridge
    from cri_proxy.bridge.negotiate import Negotiator

__all__ = ["Bridge", "BridgeOptions", "Negotiator", "needs_bridge"]


def __getattr__(name: str) -> Any:
    if name == "Bridge":
        from cri_proxy.bridge.bridge import Bridge

        return Bridge
    if name == "Negotiator":
        from cri_proxy.bridge.negotiate import Negotiator

        return Negotiator
    raise AttributeError(name)
