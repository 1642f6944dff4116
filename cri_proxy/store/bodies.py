"""How a body stored as a delta is encoded (schema 6), for the writer and the readers alike.

A delta is one zstandard frame compressed with its keyframe's bytes as a raw-content
dictionary (zstd's "prefix" use: the keyframe is the window the frame's matches point into),
with the content size in the frame header. A keyframe is stored as it is, never as a delta,
so decoding a body needs at most one dictionary, and that dictionary is in the same file.

zstandard rather than zlib's preset dictionary: zlib's window is 32 KiB, so a 111 KB stats
reply could only use its last 32 KiB as the dictionary; measured on the benchmark's
ListContainerStats replies (benchmarks/storage.py), zstd with the keyframe as dictionary
stores 8.8 KB of 108 KB, zlib with a dictionary 19.8 KB, zlib alone 20 KB.
"""

from __future__ import annotations

import zstandard

from cri_proxy.model.errors import StorageError

LEVEL = 3  # level 6 saved 6% more for twice the time; 1 stored 65% more


def _dictionary(base: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def compressor(base: bytes) -> zstandard.ZstdCompressor:
    """A compressor of deltas against `base` (built once per keyframe: the dictionary's
    tables are the costly part)."""
    return zstandard.ZstdCompressor(level=LEVEL, dict_data=_dictionary(base), write_content_size=True,
                                    write_checksum=True)


def undelta(delta: bytes, base: bytes) -> bytes:
    """The body's bytes from its delta and its keyframe's bytes; StorageError (one line) when
    they do not belong together (the frame's checksum says so) or the frame is damaged."""
    try:
        return zstandard.ZstdDecompressor(dict_data=_dictionary(base)).decompress(delta)
    except zstandard.ZstdError as exc:
        raise StorageError(f"a body stored as a delta does not decode with its keyframe: {exc}") from None
