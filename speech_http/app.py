"""The OpenAI-compatible ASGI app over the services a server hosts.

Routes (the OpenAPI document is at /openapi.json, browsable at /docs):

* ``POST /v1/audio/transcriptions``, ``/v1/audio/translations`` (speech_http.transcriptions)
* ``POST /v1/audio/speech`` (speech_http.speech)
* ``GET /v1/models`` and ``/v1/models/{id}``; ``GET /v1/audio/voices`` (our extension)
* ``WS /v1/realtime`` (speech_http.realtime)
* ``GET /healthz`` (alive), ``/readyz`` (models loaded), ``/metrics`` (Prometheus)

Each route calls the core the gRPC servicer calls (stt_service.unary, the
StreamingRecognizer, tts_service.synthesizer) through ``Hosted``; nothing here computes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from speech_http.aliases import OPENAI_VOICES, STT_ALIASES, TTS_MODELS
from speech_http.auth import authorize
from speech_http.deadlines import time_remaining
from speech_http.errors import (
    HttpError,
    handle_error,
    handle_http_exception,
    handle_validation_error,
)
from speech_http.realtime import RealtimeSession
from speech_http.speech import SpeechBody, speak
from speech_http.transcriptions import FORM_SCHEMA, read_form, transcribe
from speech_http.uploads import BodySizeLimit
from speech_platform.errors import (
    BATCHER_ERRORS,
    AuthError,
    NotFound,
    SpeechError,
    Unavailable,
)
from speech_platform.metrics import HTTP_REQUEST_LATENCY, HTTP_REQUESTS
from speech_platform.principals import Authenticator

if TYPE_CHECKING:  # a TTS-only server never loads the STT libraries, nor the reverse
    from stt_service.service import SpeechToTextService
    from tts_service.service import TextToSpeechService

#: "created" of every model in /v1/models (the SDK wants an integer; ours are fixed assets).
_CREATED = 0
_OWNER = "speech-platform"


@dataclass
class Hosted:
    """What the HTTP door serves: the server's services (None when not hosted here)."""

    stt: SpeechToTextService | None
    tts: TextToSpeechService | None
    #: The server's one Authenticator (shared with the gRPC interceptor).
    authenticator: Authenticator
    max_upload_bytes: int
    #: True once every hosted service has loaded its models.
    ready: Callable[[], bool]


def build_app(hosted: Hosted) -> FastAPI:
    app = FastAPI(
        title="speech-platform (OpenAI-compatible)",
        version="1",
        description="Speech-to-text and text-to-speech behind OpenAI's audio API. "
        "Model and voice names of OpenAI are accepted as aliases (see /v1/models, "
        "/v1/audio/voices).",
    )
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    # Every expected failure by its class: these are answered by the exception middleware
    # (a handler for Exception alone runs in Starlette's outermost middleware, which logs
    # the failure as a crash and raises it on after answering).
    for expected in (HttpError, SpeechError, *BATCHER_ERRORS):
        app.add_exception_handler(expected, handle_error)
    app.add_exception_handler(Exception, handle_error)  # anything else: 500, logged
    _add_routes(app, hosted)
    app.add_middleware(BodySizeLimit, limit_bytes=hosted.max_upload_bytes)
    app.add_middleware(RequestMetrics)
    return app


async def _caller(request: Request) -> str:
    """The authorised caller of a request (401 otherwise): the dependency of every /v1 route.

    A coroutine, so FastAPI calls it on the loop (a plain function would cost a hop to its
    thread pool on every request)."""
    hosted: Hosted = request.app.state.hosted
    return authorize(hosted.authenticator, request.headers, _client(request.client))


Caller = Annotated[str, Depends(_caller)]


def _add_routes(app: FastAPI, hosted: Hosted) -> None:
    app.state.hosted = hosted

    def stt() -> SpeechToTextService:
        if hosted.stt is None:
            raise NotFound("speech-to-text is not served by this server")
        return hosted.stt

    def tts() -> TextToSpeechService:
        if hosted.tts is None:
            raise NotFound("text-to-speech is not served by this server")
        if not hosted.ready():
            raise Unavailable("text-to-speech voices are still loading; retry shortly")
        return hosted.tts

    async def uploaded(request: Request, who: str, task: str) -> Response:
        service = stt()
        remaining = time_remaining(request.headers)
        form = await read_form(request)
        return await transcribe(
            service.unary, form, task=task, caller=who, time_remaining=remaining
        )

    @app.post("/v1/audio/transcriptions", openapi_extra=FORM_SCHEMA, tags=["audio"])
    async def transcriptions(request: Request, who: Caller) -> Response:
        """Transcribes an uploaded recording (OpenAI's createTranscription)."""
        return await uploaded(request, who, "transcribe")

    @app.post("/v1/audio/translations", openapi_extra=FORM_SCHEMA, tags=["audio"])
    async def translations(request: Request, who: Caller) -> Response:
        """Translates speech in any language into English text (multilingual model)."""
        return await uploaded(request, who, "translate")

    @app.post("/v1/audio/speech", tags=["audio"], response_class=Response)
    async def speech(request: Request, body: SpeechBody, who: Caller) -> Response:
        """Speaks a text; the audio streams out sentence by sentence."""
        service = tts()
        timeout_s = time_remaining(request.headers)()
        return await speak(service.synthesizer, service.door, body, who, timeout_s)

    @app.get("/v1/models", tags=["models"])
    async def models(_who: Caller) -> dict[str, Any]:
        """STT models (and OpenAI's names for the default), TTS models by tier."""
        return {"object": "list", "data": [_model(m) for m in _model_ids(hosted)]}

    @app.get("/v1/models/{model_id}", tags=["models"])
    async def model(model_id: str, _who: Caller) -> dict[str, Any]:
        if model_id not in _model_ids(hosted):
            raise NotFound(f"model {model_id!r} is not served here; GET /v1/models lists them")
        return _model(model_id)

    @app.get("/v1/audio/voices", tags=["audio"])
    async def voices(_who: Caller, language: str = "") -> dict[str, Any]:
        """Extension: the voices /v1/audio/speech takes, with the OpenAI names mapped to
        each (on the high tier; on tts-1 every OpenAI name is the Piper voice)."""
        service = tts()
        aliases: dict[str, list[str]] = {}
        for openai_name, ours in OPENAI_VOICES.items():
            aliases.setdefault(ours, []).append(openai_name)
        return {
            "object": "list",
            "data": [
                {
                    "id": v.name,
                    "object": "voice",
                    "engine": v.engine,
                    "tier": v.tier.name.lower(),
                    "language": v.language_code,
                    "gender": v.gender.name.lower(),
                    "sample_rate": v.sample_rate,
                    "openai_aliases": aliases.get(v.name, []),
                }
                for v in service.synthesizer.list_voices(language)
            ],
        }

    @app.websocket("/v1/realtime")
    async def realtime(socket: WebSocket) -> None:
        """Realtime transcription (OpenAI's transcription session events)."""
        headers = dict(socket.headers)
        key = _subprotocol_key(socket)
        if key and "authorization" not in headers:
            headers["authorization"] = f"Bearer {key}"
        try:
            who = authorize(hosted.authenticator, headers, _client(socket.client))
            service = stt()
            service.unary.require_ready()
        except SpeechError as error:
            # Refused before the handshake completes: the client sees HTTP 403.
            policy = isinstance(error, AuthError)
            await socket.close(code=1008 if policy else 1011, reason=error.message[:120])
            return
        offered = socket.scope.get("subprotocols") or []
        await socket.accept(subprotocol="realtime" if "realtime" in offered else None)
        await RealtimeSession(socket, service.streaming, who).run()

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics of this process (the same registry as the metrics port)."""
        text = await asyncio.to_thread(generate_latest)  # every family: off the loop
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """Readiness: every hosted model is loaded (503 until then)."""
        ready = hosted.ready()
        return JSONResponse({"status": "ready" if ready else "loading"}, 200 if ready else 503)


def _client(client: Any) -> tuple[str, int] | None:
    return (client.host, client.port) if client is not None else None


def _subprotocol_key(socket: WebSocket) -> str | None:
    """Browsers cannot set headers on a WebSocket: OpenAI's clients then send the key as a
    subprotocol, ``openai-insecure-api-key.<key>`` (with ``realtime``)."""
    offered = socket.scope.get("subprotocols") or []
    prefix = "openai-insecure-api-key."
    keys = [p.removeprefix(prefix) for p in offered if p.startswith(prefix)]
    if keys:
        return keys[0]
    return "" if "realtime" in offered else None


def _model_ids(hosted: Hosted) -> list[str]:
    ids: list[str] = []
    if hosted.stt is not None:
        ids += [m.name for m in hosted.stt.unary.transcriber.models()] + list(STT_ALIASES)
    if hosted.tts is not None:
        ids += list(TTS_MODELS)
    return ids


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": _OWNER}


class RequestMetrics:
    """Counts and times every HTTP request by route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                HTTP_REQUEST_LATENCY.labels(_route(scope)).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            HTTP_REQUESTS.labels(_route(scope), str(status)).inc()


def _route(scope: Scope) -> str:
    """The route's template (bounded label values), or "other" for unknown paths."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "other"
