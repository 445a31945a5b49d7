"""Who is calling, as the key that limits and fair shares are kept per.

With auth on, a caller is its principal (speech_platform.principals: the name a token or
client certificate maps to, so one principal's many tokens or connections share one
allowance); with auth off, the peer's host, so one machine's many connections share one.

    >>> caller_id(None, "ipv4:10.0.0.7:51234"), caller_id(None, "ipv6:[::1]:4000")
    ('peer:10.0.0.7', 'peer:[::1]')
    >>> from speech_platform.principals import Principal
    >>> caller_id(Principal("billing"), "ipv4:10.0.0.7:51234")
    'principal:billing'
"""

from __future__ import annotations

from typing import Any

from speech_platform.principals import Principal, current_principal


def caller_id(principal: Principal | None, peer: str) -> str:
    if principal is not None and principal.authenticated:
        return "principal:" + principal.name
    address = peer.split(":", 1)[1] if ":" in peer else peer
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return "peer:" + host


def caller_of(context: Any) -> str:
    """The caller of the grpc.aio RPC being served (see ``caller_id``)."""
    return caller_id(current_principal(), context.peer() or "")
