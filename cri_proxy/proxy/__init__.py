"""The relay process: the front door that forwards HTTP/2 bytes between the kubelet and the runtime.

Connections, routing, the server, the version prober, the daemon, and the parent side of the
link to the recorder process. Never imports protobuf, sqlite3 or the recorder's internals:
what the relay process loads is what it costs the node.
"""
