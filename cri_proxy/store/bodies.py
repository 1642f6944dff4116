"""How a body stored as a delta is encoded (schema 6), for the writer and the readers alike.

A delta is one zstandard frame compressed with its keyframe's bytes as a raw-content
dictionary (zstd's "prefix" use: the keyframe is the window the frame's matches point into),
with the content size in the frame header. A keyframe is stored as it is, never as a delta;
a delta's base (its dictionary) is the keyframe, or a delta before it (a chain,
recorder/packing.py), rebuilt first (store/chains.py); either way it is in the same file.

zstandard rather than zlib's preset dictionary: zlib's window is 32 KiB, so a 111 KB stats
reply could only use its last 32 KiB as the dictionary; measured on the benchmark's
ListContainerStats replies (benchmarks/storage.py), zstd with the keyframe as dictionary
stores 8.8 KB of 108 KB, zlib with a dictionary 19.8 KB, zlib alone 20 KB.

A reply whose entries repeat the keyframe's but for their numbers (a stats reply) is stored
as a *stats delta* when that is smaller (store/statsdelta.py): a marker byte, the body's
CRC-32 (little-endian), then a zstd frame as above holding the numbers' residuals and the
entries that did not align. No zstd frame starts with a marker (they start with the magic
number 0xFD2FB528, little-endian), so both read from the same column. NESTED_MARKER (written
from 2 Dec 2026) may split a field that does not align into its own fields at any depth;
STATS_MARKER's deltas split only an entry's own fields, and read with the same decoder. The writer's encoder
rebuilds every stats delta before it is stored and keeps the plain delta when the bytes
differ; a reader checks the CRC, so a wrong keyframe fails loudly as with a plain delta.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict

import zstandard

from cri_proxy.model.errors import StorageError
from cri_proxy.store.statsdelta import Keyframe

LEVEL = 3  # level 6 saved 6% more for twice the time; 1 stored 65% more
STATS_MARKER = 0x02  # written until 2 Dec 2026: only an entry's own fields split
NESTED_MARKER = 0x03  # nested fields split too (a pod's containers in ListPodSandboxStats)
_MARKERS = (bytes([STATS_MARKER]), bytes([NESTED_MARKER]))
# Bodies up to this size may be stats deltas: their Python work grows with the entries and
# the fields split (35 M instructions to write and check, 15 M to read, a 107 KB reply of 200
# containers; 97 M to write a 142 KB ListPodSandboxStats reply of 80 pods: about 7 and 3 ms,
# and 15 ms, of CPU on the loaded 2-core dev VM); a 1 MB reply gets the plain delta.
STATS_MAX_BYTES = 256 << 10
# A plain delta over 1/RESEMBLES of the body: the body does not resemble its keyframe, and the
# writer stores it as it is (recorder/packing.py's DELTA_MAX_RATIO), so no stats delta is tried.
RESEMBLES = 4
_PARSED = 4  # keyframes a reader keeps parsed (a keyframe serves every delta until the next)


def _dictionary(base: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


class Encoder:
    """Deltas against one keyframe (built once per keyframe: the dictionary's tables and
    the keyframe's parse are the costly part, each made at the first body that needs it)."""

    def __init__(self, base: bytes) -> None:
        self._base = base
        self._zstd = zstandard.ZstdCompressor(level=LEVEL, dict_data=_dictionary(base), write_content_size=True,
                                              write_checksum=True)
        self._parsed: Keyframe | None = None
        self._check: zstandard.ZstdDecompressor | None = None

    def compress(self, data: bytes) -> bytes:
        """The smaller of the stats delta (when it rebuilds `data` exactly) and the plain delta.
        Only a body whose plain delta shows it resembles the keyframe is tried as a stats
        delta: a keyframe is parsed for nothing else, and one parsed is kept for its next."""
        plain = self._zstd.compress(data)
        if len(plain) * RESEMBLES <= len(data) <= STATS_MAX_BYTES and len(self._base) <= STATS_MAX_BYTES:
            if self._parsed is None:
                self._parsed = Keyframe(self._base)
                self._check = _decompressor(self._base)
            content = self._parsed.encode(data)
            if content is not None and self._check is not None:
                delta = bytes([NESTED_MARKER]) + zlib.crc32(data).to_bytes(4, "little") + self._zstd.compress(content)
                try:
                    if len(delta) < len(plain) and _stats_body(delta, self._parsed, self._check) == data:
                        return delta
                except StorageError:
                    pass
        return plain


def compressor(base: bytes) -> Encoder:
    """The writer's deltas against `base`."""
    return Encoder(base)


def _decompressor(base: bytes) -> zstandard.ZstdDecompressor:
    return zstandard.ZstdDecompressor(dict_data=_dictionary(base))


_readers: OrderedDict[bytes, tuple[Keyframe, zstandard.ZstdDecompressor]] = OrderedDict()
_readers_lock = threading.Lock()


def _parsed(base: bytes) -> tuple[Keyframe, zstandard.ZstdDecompressor]:
    """The keyframe parsed for stats deltas and its decompressor, kept for the next deltas
    of the same keyframe (found by its bytes: a reader's row gives new bytes objects).
    Called with _readers_lock held."""
    found = _readers.get(base)
    if found is None:
        found = _readers[base] = (Keyframe(base), _decompressor(base))
        while len(_readers) > _PARSED:
            _readers.popitem(last=False)
    else:
        _readers.move_to_end(base)
    return found


def _stats_body(delta: bytes, frame: Keyframe, decompressor: zstandard.ZstdDecompressor) -> bytes:
    try:
        content = decompressor.decompress(delta[5:])
        body = frame.decode(content, legacy=delta[0] == STATS_MARKER)
    except (zstandard.ZstdError, ValueError, IndexError) as exc:
        raise StorageError(f"a body stored as a stats delta does not decode with its keyframe: {exc}") from None
    if zlib.crc32(body) != int.from_bytes(delta[1:5], "little"):
        raise StorageError("a body stored as a stats delta does not decode with its keyframe: its CRC-32 differs")
    return body


def undelta(delta: bytes, base: bytes) -> bytes:
    """The body's bytes from its delta and its keyframe's bytes; StorageError (one line) when
    they do not belong together (the frame's checksum or the body's CRC says so) or the
    delta is damaged."""
    if delta[:1] in _MARKERS:
        # Readers on several threads (one per aiosqlite connection) share the parsed keyframes,
        # and a zstd decompression context is not for concurrent use: the whole read is locked.
        with _readers_lock:
            return _stats_body(delta, *_parsed(base))
    try:
        return zstandard.ZstdDecompressor(dict_data=_dictionary(base)).decompress(delta)
    except zstandard.ZstdError as exc:
        raise StorageError(f"a body stored as a delta does not decode with its keyframe: {exc}") from None
