"""Translation between CRI versions: the bridge the front door routes to when the client's
version differs from the runtime's, or when the proxy must answer a call itself."""

from cri_proxy.translate.bridge import Bridge
from cri_proxy.translate.negotiate import Negotiator
from cri_proxy.translate.options import BridgeOptions, needs_bridge

__all__ = ["Bridge", "BridgeOptions", "Negotiator", "needs_bridge"]
