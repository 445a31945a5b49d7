"""A StreamingTranscribe held open, to fill a caller's only stream slot on the real server
(stt.max_streams_per_caller = 1): that caller's next stream is refused with
RESOURCE_EXHAUSTED and a RetryInfo, for as long as this one stays open."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from speech.v1 import common_pb2, stt_pb2, stt_pb2_grpc
from tests.support.server import ServerProcess, fetch_metrics, metric_samples


class HeldStream:
    def __init__(self, server: ServerProcess, token: str) -> None:
        self._server = server
        self._requests: queue.Queue[stt_pb2.StreamingTranscribeRequest | None] = queue.Queue()
        self._channel = grpc.insecure_channel(server.address)
        stub = stt_pb2_grpc.SpeechToTextStub(self._channel)
        self._call = stub.StreamingTranscribe(
            self._feed(), metadata=(("authorization", f"Bearer {token}"),)
        )
        self._drain = threading.Thread(target=lambda: list(self._call), daemon=True)
        self._drain.start()

    def _feed(self) -> Iterator[stt_pb2.StreamingTranscribeRequest]:
        config = stt_pb2.RecognitionConfig(
            encoding=common_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000
        )
        yield stt_pb2.StreamingTranscribeRequest(
            streaming_config=stt_pb2.StreamingRecognitionConfig(config=config)
        )
        while (request := self._requests.get()) is not None:
            yield request

    def wait_until_open(self, timeout_s: float = 30.0) -> None:
        """Bounded polling of the server's live-stream gauge until it counts this stream."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            text = fetch_metrics(self._server.metrics_port)
            if metric_samples(text, "speech_stt_streams_active") >= 1:
                return
            time.sleep(0.05)
        raise AssertionError("the held stream never opened")

    def release(self) -> None:
        """Ends the stream (as a client that stopped talking) and waits for its end."""
        self._requests.put(None)
        self._drain.join(timeout=30)

    def close(self) -> None:
        self.release()
        self._channel.close()


@contextmanager
def held_stream(server: ServerProcess, token: str) -> Iterator[HeldStream]:
    held = HeldStream(server, token)
    try:
        held.wait_until_open()
        yield held
    finally:
        held.close()
