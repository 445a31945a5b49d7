"""One server interceptor for every RPC: auth, deadline on arrival, error mapping, metrics.

Servicers just raise (speech_platform.errors or batcher errors); the status code, message
and retry hint are decided here, in one place, so no RPC can answer UNKNOWN.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from speech_platform.errors import InvalidArgument, grpc_status_for
from speech_platform.metrics import IN_FLIGHT, REQUEST_LATENCY, REQUESTS
from speech_platform.principals import Authenticator, bind

log = logging.getLogger(__name__)

#: Operators' tools work without a token by default: health checks and reflection.
OPEN_METHODS = ("grpc.health.v1.", "grpc.reflection.")
#: The auth-context property that holds the verified client certificate's subject CN.
_COMMON_NAME = "x509_common_name"


def _split(method: str) -> tuple[str, str]:
    # "/speech.v1.SpeechToText/Transcribe" -> ("SpeechToText", "Transcribe")
    service, _, name = method.lstrip("/").rpartition("/")
    return service.rsplit(".", 1)[-1], name


def _status_details(code: grpc.StatusCode, message: str, retry_after_s: float | None) -> bytes:
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    if retry_after_s is not None:
        info = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(
                seconds=int(retry_after_s), nanos=int((retry_after_s % 1) * 1e9)
            )
        )
        status.details.add().Pack(info)
    return status.SerializeToString()


async def abort_for(context: grpc.aio.ServicerContext, error: BaseException, method: str) -> None:
    """Ends the RPC with the status that fits ``error`` (google.rpc.Status details attached)."""
    code, message, retry_after_s = grpc_status_for(error)
    if code == grpc.StatusCode.INTERNAL:
        log.error("unhandled error in %s", method, exc_info=error, extra={"method": method})
    metadata: list[tuple[str, str | bytes]] = [
        ("grpc-status-details-bin", _status_details(code, message, retry_after_s))
    ]
    if retry_after_s is not None:
        metadata.append(("retry-after-ms", str(int(retry_after_s * 1000))))
    await context.abort(code, message, trailing_metadata=tuple(metadata))


def peer_common_name(context: grpc.aio.ServicerContext) -> str | None:
    """The subject CN of the client certificate gRPC's TLS layer verified, if any."""
    values = (context.auth_context() or {}).get(_COMMON_NAME) or []
    return values[0].decode(errors="replace") if values else None


#: A request message at least this large counts as memory work (``large_messages``).
LARGE_MESSAGE_BYTES = 1 << 20


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """``authenticator`` None: auth off (every caller anonymous, nothing capped).

    ``large_messages`` counts the request messages of LARGE_MESSAGE_BYTES or more it has
    parsed, refused ones included: each left gRPC's and Python's copies of its bytes in
    the heap, which the idle trim (speech_platform.memory) gives back."""

    def __init__(
        self,
        authenticator: Authenticator | None = None,
        open_methods: Sequence[str] = OPEN_METHODS,
    ) -> None:
        self._authenticator = authenticator
        self._open = tuple(open_methods)
        self._received = _Received()
        #: Per method: the handler gRPC found and its wrapped form, built once (not per
        #: call: at 1,000 arrivals a second every microsecond on the loop delays them all).
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    @property
    def large_messages(self) -> int:
        return self._received.large

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        service, name = _split(method)
        open_method = method.lstrip("/").startswith(self._open)
        wrap = _Wrapper(method, service, name, None if open_method else self._authenticator)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                wrap.unary(handler.unary_unary),
                request_deserializer=_lenient(handler.request_deserializer, self._received),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                wrap.for_streaming(handler.unary_stream),
                request_deserializer=_lenient(handler.request_deserializer, self._received),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                wrap.unary(handler.stream_unary),
                request_deserializer=_lenient(handler.request_deserializer, self._received),
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            wrap.for_streaming(handler.stream_stream),
            request_deserializer=_lenient(handler.request_deserializer, self._received),
            response_serializer=handler.response_serializer,
        )


class _Malformed:
    """A request message that did not parse (e.g. a string field that is not UTF-8)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def error(self) -> InvalidArgument:
        return InvalidArgument(f"the request message is malformed: {self.reason}")


class _Received:
    """Request messages of LARGE_MESSAGE_BYTES or more, counted as they are parsed."""

    def __init__(self) -> None:
        self.large = 0


def _lenient(
    deserialize: Callable[[bytes], Any] | None, received: _Received
) -> Callable[[bytes], Any] | None:
    """A deserializer that hands a message it cannot parse on as ``_Malformed``, so the RPC
    answers INVALID_ARGUMENT (gRPC itself would answer a parse failure with UNKNOWN)."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        if len(data) >= LARGE_MESSAGE_BYTES:
            received.large += 1
        try:
            return deserialize(data)
        except Exception as error:
            return _Malformed(str(error) or type(error).__name__)

    return parse


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream that raises InvalidArgument at its first malformed message."""
    async for request in requests:
        if isinstance(request, _Malformed):
            raise request.error()
        yield request


def _parsed(request: Any) -> Any:
    """The request, with client streams checked message by message."""
    if isinstance(request, _Malformed):
        raise request.error()
    if hasattr(request, "__aiter__"):
        return _checked(request)
    return request


class _Wrapper:
    """Wraps one RPC's behaviour with the cross-cutting concerns."""

    def __init__(
        self,
        method: str,
        service: str,
        name: str,
        authenticator: Authenticator | None,
    ) -> None:
        self.method = method
        self.service = service
        self.name = name
        self.authenticator = authenticator
        # Metric children resolved once per method, not per call.
        self._in_flight = IN_FLIGHT.labels(service)
        self._latency = REQUEST_LATENCY.labels(service, name)
        self._requests: dict[str, Any] = {}

    async def _precheck(self, context: grpc.aio.ServicerContext) -> None:
        if self.authenticator is not None:
            header = dict(context.invocation_metadata() or ()).get("authorization")
            # The certificate's CN only counts without a token, under mTLS (reading the auth
            # context costs the loop ~40 us a call).
            mtls = self.authenticator.mtls and not header
            common_name = peer_common_name(context) if mtls else None
            # Raises Unauthenticated / PermissionDenied, answered like any SpeechError.
            bind(self.authenticator.authenticate(header, common_name))
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed on arrival")

    def _finish(self, context: grpc.aio.ServicerContext, started: float, code: str) -> None:
        self._in_flight.dec()
        counter = self._requests.get(code)
        if counter is None:
            counter = self._requests[code] = REQUESTS.labels(self.service, self.name, code)
        counter.inc()
        self._latency.observe(time.perf_counter() - started)

    @staticmethod
    def _code_of(context: grpc.aio.ServicerContext) -> str:
        code = context.code()
        if isinstance(code, grpc.StatusCode):
            return code.name
        return "UNKNOWN" if code is None else grpc.StatusCode(code).name

    def unary(self, behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            self._in_flight.inc()
            code = "OK"
            try:
                await self._precheck(context)
                return await behaviour(_parsed(request), context)
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except grpc.aio.AbortError:
                code = self._code_of(context)
                raise
            except Exception as error:
                code = grpc_status_for(error)[0].name
                await abort_for(context, error, self.method)
            finally:
                self._finish(context, started, code)

        return call

    def for_streaming(self, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        """Streaming handlers come in two styles: async generators that yield responses,
        and coroutines that write them with ``context.write`` (grpc.health.v1 Watch)."""
        if inspect.isasyncgenfunction(behaviour):
            return self.streaming(behaviour)
        return self.unary(behaviour)

    def streaming(
        self, behaviour: Callable[..., AsyncIterator[Any]]
    ) -> Callable[..., AsyncIterator[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            self._in_flight.inc()
            code = "OK"
            try:
                await self._precheck(context)
                async for response in behaviour(_parsed(request), context):
                    yield response
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except grpc.aio.AbortError:
                code = self._code_of(context)
                raise
            except Exception as error:
                code = grpc_status_for(error)[0].name
                await abort_for(context, error, self.method)
            finally:
                self._finish(context, started, code)

        return call
