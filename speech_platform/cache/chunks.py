"""One cache value for a whole streamed response, so a hit replays the same chunks.

A streamed synthesis is a sequence of messages (one per sentence); caching the
concatenated audio would lose the boundaries a client relies on (sentence_index, text).
The format is a magic tag, a count, then length-prefixed chunks (big-endian u32): cheap to
write, and a truncated or foreign value is detected instead of being replayed as garbage.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

_MAGIC = b"SPC1"
_U32 = struct.Struct(">I")
_MAX_U32 = 0xFFFFFFFF


class CorruptChunks(ValueError):
    """The bytes are not a value written by :func:`encode_chunks` (or were cut short)."""


def encode_chunks(chunks: Sequence[bytes]) -> bytes:
    """Packs chunks (each below 4 GiB) into one value.

    >>> decode_chunks(encode_chunks([b"a", b"", b"bc"]))
    [b'a', b'', b'bc']
    """
    if len(chunks) > _MAX_U32:
        raise ValueError("too many chunks")
    parts = [_MAGIC, _U32.pack(len(chunks))]
    for chunk in chunks:
        if len(chunk) > _MAX_U32:
            raise ValueError("chunk larger than 4 GiB")
        parts.append(_U32.pack(len(chunk)))
        parts.append(bytes(chunk))
    return b"".join(parts)


def decode_chunks(value: bytes) -> list[bytes]:
    """The chunks packed by :func:`encode_chunks`; CorruptChunks if the value is not one."""
    view = memoryview(value)
    if len(view) < 8 or bytes(view[:4]) != _MAGIC:
        raise CorruptChunks("not an encoded chunk list")
    (count,) = _U32.unpack_from(view, 4)
    offset = 8
    chunks: list[bytes] = []
    for _ in range(count):
        if offset + 4 > len(view):
            raise CorruptChunks("chunk list cut short")
        (size,) = _U32.unpack_from(view, offset)
        offset += 4
        if offset + size > len(view):
            raise CorruptChunks("chunk list cut short")
        chunks.append(bytes(view[offset : offset + size]))
        offset += size
    if offset != len(view):
        raise CorruptChunks("trailing bytes after the last chunk")
    return chunks
