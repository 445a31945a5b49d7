"""Who is calling: the identity that limits and fair shares are kept per.

With bearer tokens, a caller is its token (as a digest: tokens never reach logs or
metrics); without auth, the peer's host, so one machine's many connections share one
allowance.

    >>> caller_id({"authorization": "Bearer s3cret"}, "ipv4:10.0.0.7:51234")[:13]
    'token:0c9ae60'
    >>> caller_id({}, "ipv4:10.0.0.7:51234"), caller_id({}, "ipv6:[::1]:4000")
    ('peer:10.0.0.7', 'peer:[::1]')
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any


def caller_id(metadata: Mapping[str, Any], peer: str) -> str:
    token = metadata.get("authorization")
    if token:
        raw = token.encode() if isinstance(token, str) else bytes(token)
        return "token:" + hashlib.sha256(raw).hexdigest()[:16]
    address = peer.split(":", 1)[1] if ":" in peer else peer
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return "peer:" + host


def caller_of(context: Any) -> str:
    """The caller of a grpc.aio RPC (see ``caller_id``)."""
    return caller_id(dict(context.invocation_metadata() or ()), context.peer() or "")
