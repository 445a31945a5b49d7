"""Failures as OpenAI's error JSON, with the HTTP status that fits our gRPC code.

Every error the cores raise (speech_platform.errors, the batcher's) is mapped by the same
``grpc_status_for`` the gRPC interceptor uses, then given an HTTP status here, so the two
doors refuse alike: INVALID_ARGUMENT -> 400, NOT_FOUND -> 404, RESOURCE_EXHAUSTED -> 429
with ``Retry-After`` from the retry delay, and so on. The body is OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``, which its SDKs turn into typed
exceptions.
"""

from __future__ import annotations

import logging
import math

import grpc
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from speech_platform.errors import grpc_status_for

log = logging.getLogger(__name__)

#: gRPC code -> (HTTP status, OpenAI error type).
_STATUS: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "invalid_request_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.CANCELLED: (499, "invalid_request_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "server_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "server_error"),
}


class HttpError(Exception):
    """An HTTP-level refusal (bad multipart, upload too large) with its status and code."""

    def __init__(self, status: int, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def error_body(
    message: str, error_type: str, code: str | None, param: str | None = None
) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(error: BaseException) -> JSONResponse:
    """The response for any failure of a request (logged when it is ours to fix)."""
    if isinstance(error, HttpError):
        error_type = (
            "authentication_error"
            if error.status == 401
            else "invalid_request_error"
            if error.status < 500
            else "server_error"
        )
        # A body refused part-way (413) is not read to its end: the connection cannot
        # carry another request.
        headers = {"Connection": "close"} if error.status == 413 else None
        return JSONResponse(
            error_body(error.message, error_type, error.code, error.param),
            error.status,
            headers=headers,
        )
    code, message, retry_after_s = grpc_status_for(error)
    status, error_type = _STATUS.get(code, (500, "server_error"))
    if status == 500:
        log.error("unhandled error in the HTTP API", exc_info=error)
    headers = {}
    if retry_after_s is not None and status in (429, 503):
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return JSONResponse(error_body(message, error_type, code.name.lower()), status, headers=headers)


async def handle_error(_request: Request, error: Exception) -> JSONResponse:
    return error_response(error)


async def handle_http_exception(_request: Request, error: Exception) -> JSONResponse:
    """Starlette's own refusals (no such route: 404, wrong method: 405) in OpenAI's shape."""
    assert isinstance(error, StarletteHTTPException)
    headers = dict(error.headers or {})
    error_type = "invalid_request_error" if error.status_code < 500 else "server_error"
    code = "unknown_url" if error.status_code == 404 else f"http_{error.status_code}"
    return JSONResponse(
        error_body(str(error.detail), error_type, code), error.status_code, headers=headers
    )


async def handle_validation_error(_request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 for a missing or mistyped field, as OpenAI's 400 naming the field."""
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    first = problems[0] if problems else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query")]
    param = ".".join(location) or None
    message = f"{param}: {first.get('msg', 'invalid value')}" if param else "invalid request"
    return JSONResponse(error_body(message, "invalid_request_error", "invalid_value", param), 400)
