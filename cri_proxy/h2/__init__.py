"""The HTTP/2 and gRPC wire codecs: frame headers, HPACK, gRPC message framing.

Shared by the relay (routing reads one header block), the recorder's tap (rebuilds whole
calls) and the version prober (speaks one call of raw HTTP/2). Imports only the model.
"""
