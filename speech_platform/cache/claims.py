"""What a cross-replica claim on a cache key found. Its own module so that the tiered cache
can read claims without importing the Redis client (24 MB resident) in servers that have no
Redis tier."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ClaimKind(enum.Enum):
    HIT = "hit"  # the value is stored; here it is
    OWNER = "owner"  # we hold the lock: compute, then complete()
    WAIT = "wait"  # another replica is computing: wait()
    UNAVAILABLE = "unavailable"  # Redis is down or the breaker is open: compute alone


@dataclass(frozen=True, slots=True)
class Claim:
    kind: ClaimKind
    value: bytes | None = None
    token: str = ""
