"""Bearer-token checks, shared by every front door (the gRPC interceptor, speech_http).

One function decides whether an ``authorization`` value is accepted, so gRPC metadata and an
HTTP header are judged alike; each door only turns the refusal into its own status.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class AuthRefusal:
    """Why a request is refused: UNAUTHENTICATED (no or malformed credentials) or
    PERMISSION_DENIED (a token that is not accepted)."""

    code: grpc.StatusCode
    message: str


class BearerTokens:
    """The accepted tokens; with none configured, every request is let in."""

    def __init__(self, tokens: Sequence[str] = ()) -> None:
        self._tokens = [t.encode() for t in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def refusal(self, header: str | bytes | None) -> AuthRefusal | None:
        """None when ``header`` (the ``authorization`` value) is accepted."""
        if not self._tokens:
            return None
        if not header:
            return AuthRefusal(
                grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>'"
            )
        value = header.encode() if isinstance(header, str) else header
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return AuthRefusal(
                grpc.StatusCode.UNAUTHENTICATED, "authorization must be 'Bearer <token>'"
            )
        if not any(hmac.compare_digest(token, known) for known in self._tokens):
            return AuthRefusal(grpc.StatusCode.PERMISSION_DENIED, "token not accepted")
        return None
