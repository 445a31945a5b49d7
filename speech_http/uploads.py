"""A cap on request bodies, enforced while they arrive.

A body whose ``Content-Length`` is over the cap is refused with 413 before a byte of it is
read; a body without one (chunked) is counted as it streams in, and the request fails with
413 the moment it passes the cap. Either way at most the cap is ever received (the
multipart parser spools file parts to disk beyond 1 MB, so not even that much sits in
memory).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from speech_http.errors import HttpError, error_body


def too_large(limit_bytes: int) -> HttpError:
    return HttpError(
        413,
        f"the upload is larger than this server accepts ({limit_bytes / 2**20:g} MiB, "
        "server.http_max_upload_mb); send a shorter recording or submit it as a job",
        code="request_too_large",
    )


class BodySizeLimit:
    """ASGI middleware: bodies over ``limit_bytes`` get 413 (see the module docstring)."""

    def __init__(self, app: ASGIApp, limit_bytes: int) -> None:
        self.app = app
        self.limit_bytes = limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit_bytes:
            await _refuse(send, too_large(self.limit_bytes))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit_bytes:
                    raise too_large(self.limit_bytes)
            return message

        await self.app(scope, counted, send)


async def _refuse(send: Send, error: HttpError) -> None:
    body = json.dumps(error_body(error.message, "invalid_request_error", error.code)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
