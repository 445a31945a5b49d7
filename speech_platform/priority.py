"""The one priority table: speech.v1.Priority -> the batcher's scale (higher is served first).

Every service maps a request's priority through here, so STT, TTS and jobs queue alike.
A request's priority is a wish, capped by what its caller is entitled to: the interceptor
sets the entitlement of the RPC's principal (``entitle``) and ``from_proto`` serves a wish
above it at the cap (it is not refused: a client that always asks HIGH keeps working,
without jumping anyone's queue). Outside an RPC (in-process code) nothing is capped.

>>> from speech.v1 import common_pb2
>>> [from_proto(p) for p in (common_pb2.PRIORITY_UNSPECIFIED, common_pb2.PRIORITY_LOW,
...                          common_pb2.PRIORITY_NORMAL, common_pb2.PRIORITY_HIGH)]
[1, 0, 1, 2]
"""

from __future__ import annotations

from contextvars import ContextVar, Token

from speech.v1 import common_pb2
from speech_platform.errors import InvalidArgument

#: The batcher's levels. Job work runs at LOW, so live traffic sharing a process goes first.
LOW, NORMAL, HIGH = 0, 1, 2
LEVELS = (LOW, NORMAL, HIGH)
#: Levels by the names configuration uses (``max_priority: high``).
BY_NAME = {"low": LOW, "normal": NORMAL, "high": HIGH}

#: The highest level the current request may be served at (set per RPC by the interceptor).
_ENTITLEMENT: ContextVar[int] = ContextVar("speech_priority_entitlement", default=HIGH)


def entitle(level: int) -> Token[int]:
    """Caps the priority of the requests made in the current context (one RPC's task).

    >>> token = entitle(NORMAL)
    >>> from_proto(common_pb2.PRIORITY_HIGH), from_proto(common_pb2.PRIORITY_LOW)
    (1, 0)
    >>> _ENTITLEMENT.reset(token)
    """
    return _ENTITLEMENT.set(level)


def capped(level: int) -> int:
    """``level``, or the current entitlement when it asks for more."""
    return min(level, _ENTITLEMENT.get())

_FROM_PROTO: dict[int, int] = {
    common_pb2.PRIORITY_UNSPECIFIED: NORMAL,
    common_pb2.PRIORITY_LOW: LOW,
    common_pb2.PRIORITY_NORMAL: NORMAL,
    common_pb2.PRIORITY_HIGH: HIGH,
}


def from_proto(
    value: int, error: str = "config.priority: unknown Priority value {value}"
) -> int:
    """A speech.v1.Priority value on the batcher's scale, capped by the caller's entitlement;
    InvalidArgument for a value the contract does not define (``error`` words it in the
    service's own terms).

    >>> from_proto(9, "priority {value} is not a known Priority value")
    Traceback (most recent call last):
    ...
    speech_platform.errors.InvalidArgument: priority 9 is not a known Priority value
    """
    try:
        return capped(_FROM_PROTO[value])
    except KeyError:
        raise InvalidArgument(error.format(value=value)) from None
