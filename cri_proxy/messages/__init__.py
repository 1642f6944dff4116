"""The CRI messages as protobuf: the message classes of each method, decoding to JSON.

Loads protobuf and the generated descriptors: used by the recorder process, the bridge and
the read side, never by the relay process.
"""
