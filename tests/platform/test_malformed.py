"""A request message that does not parse answers INVALID_ARGUMENT, never UNKNOWN.

gRPC answers a message its deserializer rejects (say, a string field that is not UTF-8)
with UNKNOWN; the server interceptor turns it into INVALID_ARGUMENT with the reason, for
unary calls and for any message of a client stream, and the server goes on serving.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from speech.v1 import stt_pb2, tts_pb2
from speech_platform.interceptors import ServerInterceptor

NOT_UTF8 = b"\xff\xfe\xfd\xfc"


def _corrupted(message: Any) -> bytes:
    return message.SerializeToString().replace(b"AAAA", NOT_UTF8)


async def _synthesize(request: Any, context: Any) -> tts_pb2.SynthesizeResponse:
    return tts_pb2.SynthesizeResponse(voice=request.text)


async def _stream(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
    async for request in requests:
        yield stt_pb2.StreamingTranscribeResponse()
        del request


@pytest.fixture
async def server() -> AsyncIterator[str]:
    handlers = {
        "Synthesize": grpc.unary_unary_rpc_method_handler(
            _synthesize,
            request_deserializer=tts_pb2.SynthesizeRequest.FromString,
            response_serializer=tts_pb2.SynthesizeResponse.SerializeToString,
        ),
        "Stream": grpc.stream_stream_rpc_method_handler(
            _stream,
            request_deserializer=stt_pb2.StreamingTranscribeRequest.FromString,
            response_serializer=stt_pb2.StreamingTranscribeResponse.SerializeToString,
        ),
    }
    server = grpc.aio.server(interceptors=[ServerInterceptor()])
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("speech.v1.Test", handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)


async def test_a_string_field_that_is_not_utf8_is_invalid_argument(server):
    async with grpc.aio.insecure_channel(server) as channel:
        call = channel.unary_unary("/speech.v1.Test/Synthesize")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(_corrupted(tts_pb2.SynthesizeRequest(text="AAAA")))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "request message is malformed" in (refused.value.details() or "")
        # The same method still serves a good message.
        good = await call(tts_pb2.SynthesizeRequest(text="hello").SerializeToString())
        assert tts_pb2.SynthesizeResponse.FromString(good).voice == "hello"


async def test_a_malformed_message_in_a_client_stream_is_invalid_argument(server):
    config = stt_pb2.StreamingTranscribeRequest(
        streaming_config=stt_pb2.StreamingRecognitionConfig(
            config=stt_pb2.RecognitionConfig(language_code="AAAA")
        )
    )
    async with grpc.aio.insecure_channel(server) as channel:
        call = channel.stream_stream("/speech.v1.Test/Stream")(
            iter([config.SerializeToString(), _corrupted(config)])
        )
        replies = []
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for reply in call:
                replies.append(reply)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "request message is malformed" in (refused.value.details() or "")
        assert len(replies) == 1  # the good first message was served
