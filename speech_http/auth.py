"""Who is calling over HTTP: the same bearer check and caller identity as over gRPC.

``authorize`` is the one place the HTTP door asks the kernel whether a request may pass
(speech_platform.auth) and who it is for fair queuing and stream limits
(speech_platform.callers): a token is the same caller whichever door it comes through.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from speech_http.errors import HttpError
from speech_platform.auth import BearerTokens
from speech_platform.callers import caller_id


def peer_of(client: tuple[str, int] | None) -> str:
    """A gRPC-style peer string ("ipv4:10.0.0.7:51234") for an ASGI client address."""
    if client is None:
        return "unknown"
    host, port = client
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def authorize(
    tokens: BearerTokens, headers: Mapping[str, str], client: tuple[str, int] | None
) -> str:
    """The caller's identity; raises HttpError 401 when the token is missing or refused."""
    header = headers.get("authorization")
    refusal = tokens.refusal(header)
    if refusal is not None:
        code = (
            "invalid_api_key"
            if refusal.code == grpc.StatusCode.PERMISSION_DENIED
            else "missing_api_key"
        )
        raise HttpError(401, refusal.message, code=code)
    metadata = {"authorization": header} if header else {}
    return caller_id(metadata, peer_of(client))
