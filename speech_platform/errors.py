"""Errors that carry their gRPC status, so servicers raise and one place answers.

Servicers and engines raise these (or the batcher's own exceptions); ``grpc_status_for``
maps every known failure to a code and a message a caller can act on. Anything unknown
becomes INTERNAL with a logged traceback, never UNKNOWN.
"""

from __future__ import annotations

import grpc

from batcher import BatcherClosed, DeadlineExpired, QueueFull, RequestCancelled


class SpeechError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(SpeechError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(SpeechError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(SpeechError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(SpeechError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(SpeechError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(SpeechError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class AuthError(SpeechError):
    """A credential that is missing, malformed or not accepted (speech_platform.principals);
    an HTTP door answers the subclasses with 401 and 403."""


class Unauthenticated(AuthError):
    """No usable credential: HTTP 401."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(AuthError):
    """A credential was presented but is not accepted: HTTP 403."""

    code = grpc.StatusCode.PERMISSION_DENIED


#: The batcher's own failures of a request, which ``grpc_status_for`` maps too.
BATCHER_ERRORS: tuple[type[Exception], ...] = (
    QueueFull,
    DeadlineExpired,
    BatcherClosed,
    RequestCancelled,
)


def grpc_status_for(error: BaseException) -> tuple[grpc.StatusCode, str, float | None]:
    """(code, message, retry-after seconds or None) for any failure of a request."""
    if isinstance(error, ResourceExhausted):
        return error.code, error.message, error.retry_after_s
    if isinstance(error, SpeechError):
        return error.code, error.message, None
    if isinstance(error, QueueFull):
        return (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"server busy: {error}; retry with backoff",
            error.retry_after_s,
        )
    if isinstance(error, DeadlineExpired):
        return grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline passed before serving: {error}", None
    if isinstance(error, BatcherClosed):
        return grpc.StatusCode.UNAVAILABLE, "server is draining; retry on another replica", 0.1
    if isinstance(error, RequestCancelled):
        return grpc.StatusCode.CANCELLED, "request cancelled", None
    internal = f"internal error ({type(error).__name__}); see server log"
    return grpc.StatusCode.INTERNAL, internal, None
