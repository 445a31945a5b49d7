"""The one priority table: speech.v1.Priority -> the batcher's scale (higher is served first).

Every service maps a request's priority through here, so STT, TTS and jobs queue alike:

>>> from speech.v1 import common_pb2
>>> [from_proto(p) for p in (common_pb2.PRIORITY_UNSPECIFIED, common_pb2.PRIORITY_LOW,
...                          common_pb2.PRIORITY_NORMAL, common_pb2.PRIORITY_HIGH)]
[1, 0, 1, 2]
"""

from __future__ import annotations

from speech.v1 import common_pb2
from speech_platform.errors import InvalidArgument

#: The batcher's levels. Job work runs at LOW, so live traffic sharing a process goes first.
LOW, NORMAL, HIGH = 0, 1, 2
LEVELS = (LOW, NORMAL, HIGH)

_FROM_PROTO: dict[int, int] = {
    common_pb2.PRIORITY_UNSPECIFIED: NORMAL,
    common_pb2.PRIORITY_LOW: LOW,
    common_pb2.PRIORITY_NORMAL: NORMAL,
    common_pb2.PRIORITY_HIGH: HIGH,
}


def from_proto(
    value: int, error: str = "config.priority: unknown Priority value {value}"
) -> int:
    """A speech.v1.Priority value on the batcher's scale; InvalidArgument for a value the
    contract does not define (``error`` words it in the service's own terms).

    >>> from_proto(9, "priority {value} is not a known Priority value")
    Traceback (most recent call last):
    ...
    speech_platform.errors.InvalidArgument: priority 9 is not a known Priority value
    """
    try:
        return _FROM_PROTO[value]
    except KeyError:
        raise InvalidArgument(error.format(value=value)) from None
