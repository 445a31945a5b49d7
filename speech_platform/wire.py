"""A request's one large bytes field kept as a view of the bytes gRPC received.

Under protobuf's upb backend, parsing a message copies its bytes fields into the message,
and every read of such a field copies it again: a 24 MiB Transcribe cost the event loop
two copies (~35 ms of fresh pages on a 2-vCPU host) and held three of them at once, before
any handler could look at its audio. ``parse_apart`` parses the message without that field
(a scan of its top-level fields, then the small remainder) and hands the field on as a
``memoryview`` of the received bytes: no copy at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

M = TypeVar("M")

#: Top-level fields scanned before giving up and parsing whole: a hostile message of
#: millions of one-byte fields would otherwise cost the loop a Python walk of its size.
MAX_FIELDS_SCANNED = 64

_LENGTH_DELIMITED = 2
_FIXED_WIDTH = {1: 8, 5: 4}  # wire type -> bytes (64-bit, 32-bit)


@dataclass(frozen=True)
class Received(Generic[M]):
    """A message parsed without its large bytes field, and that field's value."""

    message: M
    #: A view of the bytes gRPC received (it keeps them alive); empty when absent.
    payload: memoryview


def parse_apart(
    parse: Callable[[bytes], M], number: int, min_bytes: int
) -> Callable[[bytes], M | Received[M]]:
    """A request deserializer for gRPC: messages of ``min_bytes`` or more come back as
    ``Received`` with field ``number`` (a bytes field) apart; smaller ones, and any whose
    top level does not scan, are parsed whole by ``parse`` (which raises for a malformed
    one, as it always did)."""

    def deserialize(data: bytes) -> M | Received[M]:
        if len(data) < min_bytes:
            return parse(data)
        try:
            rest, payload = split_bytes_field(data, number)
        except ValueError:
            return parse(data)
        return Received(parse(rest), payload)

    return deserialize


def split_bytes_field(data: bytes, number: int) -> tuple[bytes, memoryview]:
    """``data``, a serialized message, without its top-level field ``number`` (every
    occurrence), and that field's value as a view of ``data``: the last occurrence, which
    is what a parser keeps (empty when absent). ValueError when the top level does not
    scan as protobuf wire format within MAX_FIELDS_SCANNED fields; an occurrence that is
    not length-delimited stays in the rest, for the parser to refuse."""
    view = memoryview(data)
    kept: list[memoryview] = []
    payload = view[0:0]
    offset = start = 0
    for _ in range(MAX_FIELDS_SCANNED):
        if offset == len(data):
            kept.append(view[start:])
            return b"".join(kept), payload
        field_start = offset
        key, offset = _varint(data, offset)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ValueError("field number 0")
        if wire == 0:
            _, offset = _varint(data, offset)
        elif wire in _FIXED_WIDTH:
            offset += _FIXED_WIDTH[wire]
        elif wire == _LENGTH_DELIMITED:
            length, offset = _varint(data, offset)
            if field == number and offset + length <= len(data):
                payload = view[offset : offset + length]
                kept.append(view[start:field_start])
                start = offset + length
            offset += length
        else:
            raise ValueError(f"wire type {wire}")  # groups: not in proto3
        if offset > len(data):
            raise ValueError("truncated field")
    raise ValueError(f"more than {MAX_FIELDS_SCANNED} fields")


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    """The base-128 varint at ``offset`` and the offset after it."""
    value = shift = 0
    while offset < len(data) and shift < 64:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7
    raise ValueError("truncated or overlong varint")
