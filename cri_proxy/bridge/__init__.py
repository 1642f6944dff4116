"""The grpc.aio bridge: for connections where the proxy must run calls of its own.

CRI v1 <-> v1alpha2 translation is done in the relay (cri_proxy.proxy.translate); a
connection comes here only when it may ask for GetContainerEvents emulated by relisting
(`options.relay_translation` decides), and the bridge then serves (and translates) all of
its calls, checking each against the proxy's fault rules (`faults`) as the relay checks its
own. Its options and the routing decision (`options`) are read by the relay too.

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
