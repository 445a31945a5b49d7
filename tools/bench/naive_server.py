"""``python -m tools.bench.naive_server --engine stt|piper|kokoro|null``: the naive
baseline. The same contract (speech.v1) served the way a first version usually is: a
synchronous grpc server with one worker thread, so requests are handled one at a time, and
the model called with library defaults (``WhisperModel(path)`` + ``model.transcribe(audio)``,
``PiperVoice.load`` + ``synthesize``, ``Kokoro(...).create``). No batching, no cache."""

from __future__ import annotations

import argparse
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from speech.v1 import common_pb2, stt_pb2, stt_pb2_grpc, tts_pb2, tts_pb2_grpc
from tools.bench import engines


class NaiveSpeechToText(stt_pb2_grpc.SpeechToTextServicer):
    def __init__(self, engine: str) -> None:
        self._model = engines.load_whisper_defaults() if engine == "stt" else None

    def Transcribe(  # gRPC method name
        self, request: stt_pb2.TranscribeRequest, context: grpc.ServicerContext
    ) -> stt_pb2.TranscribeResponse:
        if self._model is None:  # the null engine: the serving path only
            return stt_pb2.TranscribeResponse(model="null", language_code="en")
        text, seconds = engines.transcribe_defaults(self._model, request.audio)
        return stt_pb2.TranscribeResponse(
            text=text, audio_duration_seconds=seconds, model="tiny.en", language_code="en"
        )


class NaiveTextToSpeech(tts_pb2_grpc.TextToSpeechServicer):
    def __init__(self, engine: str) -> None:
        self._engine = engine
        self._voice: Any = (
            engines.load_piper_defaults() if engine == "piper" else engines.load_kokoro_defaults()
        )

    def Synthesize(  # gRPC method name
        self, request: tts_pb2.SynthesizeRequest, context: grpc.ServicerContext
    ) -> tts_pb2.SynthesizeResponse:
        if self._engine == "piper":
            audio, seconds = engines.piper_synthesize(self._voice, request.text)
        else:
            audio, seconds = engines.kokoro_synthesize(self._voice, request.text)
        return tts_pb2.SynthesizeResponse(
            audio=audio,
            encoding=common_pb2.AUDIO_ENCODING_WAV,
            audio_duration_seconds=seconds,
            engine=self._engine,
        )


def serve(engine: str, host: str, port: int) -> None:
    server = grpc.server(
        ThreadPoolExecutor(max_workers=1),
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if engine in ("stt", "null"):
        stt_pb2_grpc.add_SpeechToTextServicer_to_server(NaiveSpeechToText(engine), server)
    else:
        tts_pb2_grpc.add_TextToSpeechServicer_to_server(NaiveTextToSpeech(engine), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise SystemExit(f"cannot bind {host}:{port}")
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    server.stop(grace=2).wait(5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="naive_server", description=__doc__)
    parser.add_argument("--engine", choices=["stt", "piper", "kokoro", "null"], required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.engine, args.host, args.port)


if __name__ == "__main__":
    main()
