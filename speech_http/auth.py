"""Who is calling over HTTP: the same principals and caller identity as over gRPC.

``authorize`` is the one place the HTTP door asks the kernel who a request is for: the
server's ``Authenticator`` (speech_platform.principals, the object the gRPC interceptor
uses) maps the bearer token to a principal, which is bound to the request's context (its
priority entitlement, job ownership and cache identity follow it, as over gRPC), and
``caller_id`` (speech_platform.callers) names the caller for fair queuing and stream caps.
A principal is the same caller whichever door its token comes through.
"""

from __future__ import annotations

from collections.abc import Mapping

from speech_platform.callers import caller_id
from speech_platform.principals import Authenticator, bind


def peer_of(client: tuple[str, int] | None) -> str:
    """A gRPC-style peer string ("ipv4:10.0.0.7:51234") for an ASGI client address."""
    if client is None:
        return "unknown"
    host, port = client
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def authorize(
    authenticator: Authenticator, headers: Mapping[str, str], client: tuple[str, int] | None
) -> str:
    """The caller's identity, with its principal bound to the current context; raises
    Unauthenticated (401) or PermissionDenied (403) as the gRPC door does. A client
    certificate is not read over HTTP: with mTLS on, HTTP callers send their token."""
    principal = authenticator.authenticate(headers.get("authorization"), None)
    bind(principal)
    return caller_id(principal, peer_of(client))
