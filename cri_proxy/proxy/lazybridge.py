"""The translating bridge, started on demand (`LazyBridge`): grpcio is imported, and the bridge
serves on a private socket beside the listen socket, only when a connection first needs it.

The daemon hands the relay `ready` (start it, once) and the bridge `caller`/`close_client`,
which map a bridged call's peer back to the relayed connection it came through
(proxy.peer.bridge_address), so fault rules name the real client and can close it.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import shutil
import tempfile
from typing import Any

from cri_proxy.bridge.options import BridgeOptions
from cri_proxy.proxy import faultwire
from cri_proxy.proxy.connection import Connection
from cri_proxy.proxy.peer import PeerCred, bridged_connection
from cri_proxy.proxy.prober import VersionProber
from cri_proxy.proxy.recorder_link import RecorderProcess
from cri_proxy.proxy.server import RelayServer

log = logging.getLogger(__name__)


class LazyBridge:
    """The translating bridge, started on a private socket when a connection first needs it.

    Until then the proxy carries neither grpcio nor its threads: a node whose kubelet and
    runtime speak the same CRI version never pays for translation.
    """

    def __init__(self, beside: pathlib.Path, runtime: pathlib.Path, image: pathlib.Path | None,
                 options: BridgeOptions, recorder: RecorderProcess | None, prober: VersionProber) -> None:
        """`beside`: the folder of the listen socket, where the private one's folder is made."""
        self.runtime, self.image, self.options = runtime, image, options
        self.recorder = recorder
        self.prober = prober
        self.folder = pathlib.Path(tempfile.mkdtemp(prefix=".cri-proxy-bridge-", dir=beside))
        self.path = self.folder / "bridge.sock"
        self.bridge: Any = None
        self.server: RelayServer | None = None  # whose connections' clients the bridge's calls are
        self._lock = asyncio.Lock()

    async def ready(self) -> None:
        async with self._lock:
            if self.bridge is not None:
                return
            from cri_proxy.bridge import Bridge
            from cri_proxy.bridge.faults import BridgeFaults

            log.info("a client needs CRI translation: starting the bridge")
            policy = None if self.server is None else self.server.translation
            faults = (None if policy is None or policy.faults is None
                      else BridgeFaults(policy.faults, policy.pod_facts, self.close_client))
            bridge = Bridge(self.path, self.runtime, self.image, apis=self.prober,
                            sink=self.recorder, options=self.options, callers=self.caller,
                            faults=faults)
            await bridge.start()
            self.bridge = bridge

    def caller(self, peer: str) -> PeerCred | None:
        """The client of the relayed connection a bridged call came through (peer.bridge_address)."""
        conn = self._connection(peer)
        return None if conn is None else conn.peer

    def close_client(self, peer: str, reason: str) -> bool:
        """A fault rule's close on a bridged call: its relayed connection fails (GOAWAY); False if none."""
        conn = self._connection(peer)
        if conn is None:
            return False
        conn.fail(faultwire.NO_ERROR, reason)
        return True

    def _connection(self, peer: str) -> Connection | None:
        conn_id = bridged_connection(peer)
        if conn_id is None or self.server is None:
            return None
        return next((conn for conn in self.server.connections if conn.id == conn_id), None)

    async def stop(self) -> None:
        if self.bridge is not None:
            await self.bridge.stop(1.0)
        shutil.rmtree(self.folder, ignore_errors=True)
