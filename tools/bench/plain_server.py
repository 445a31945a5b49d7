"""``python -m tools.bench.plain_server --port P``: the plain STT server a user would write.

The baseline of issue 13, in about 60 lines: a grpc.aio server whose Transcribe calls
faster-whisper's own ``WhisperModel.transcribe`` with a little tuning: the same model
(tiny.en), int8, two instances of one thread each (one per core on this 2-core machine),
each serving one request at a time, no batching, beam 5 (English). Its answers are the
library's, so its transcripts never depend on other requests.
"""

from __future__ import annotations

import argparse
import asyncio
import io
from typing import Any

import grpc
from faster_whisper import WhisperModel
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from speech.v1 import stt_pb2, stt_pb2_grpc
from stt_service.assets import model_path

INSTANCES, THREADS, BEAM_SIZE = 2, 1, 5


class PlainSpeechToText(stt_pb2_grpc.SpeechToTextServicer):
    def __init__(self, instances: int = INSTANCES) -> None:
        path = str(model_path("tiny.en"))
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        for _ in range(instances):
            self._idle.put_nowait(
                WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=THREADS)
            )

    @staticmethod
    def _transcribe(model: Any, audio: bytes) -> tuple[str, float]:
        segments, info = model.transcribe(io.BytesIO(audio), beam_size=BEAM_SIZE, language="en")
        return "".join(s.text for s in segments).strip(), float(info.duration)

    async def Transcribe(  # gRPC method name
        self, request: stt_pb2.TranscribeRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.TranscribeResponse:
        model = await self._idle.get()  # one request per instance at a time
        try:
            text, seconds = await asyncio.to_thread(self._transcribe, model, request.audio)
        finally:
            self._idle.put_nowait(model)
        return stt_pb2.TranscribeResponse(
            text=text, audio_duration_seconds=seconds, model="tiny.en", language_code="en"
        )


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    stt_pb2_grpc.add_SpeechToTextServicer_to_server(PlainSpeechToText(), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise SystemExit(f"cannot bind {host}:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="plain_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
