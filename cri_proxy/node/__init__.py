"""Wiring the proxy into a node: `cri-proxy install`, `uninstall` and `doctor`.

paths.py maps the node's absolute paths under a chosen root (/ on a node, a scratch folder in
tests and image builds); systemd.py reads unit files the way systemd does; kubelet.py finds
which sockets the kubelet dials and from where (flags, config file); units.py writes the
proxy's unit and the kubelet's drop-in; plan.py decides what install changes; changes.py
applies a plan with backups and a manifest, and reverts it; doctor.py checks a node.
Nothing here imports the relay, the recorder or protobuf.
"""
