"""``SpeechClient``: the speech.v1 stubs behind one channel, with deadlines and retries."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import grpc

from speech.v1 import (
    jobs_pb2_grpc,
    stt_pb2,
    stt_pb2_grpc,
    tts_pb2,
    tts_pb2_grpc,
)
from speech_client.channel import ConnectOptions
from speech_client.retry import Deadline, RetryListener, RetryPolicy, next_retry

Response = TypeVar("Response")


class SpeechClient:
    """Calls SpeechToText and TextToSpeech (``jobs`` is the plain Jobs stub).

    ``timeout_s`` bounds each whole operation, retries and their waits included (None: no
    deadline). A streaming call is retried only while the server has sent nothing back:
    after a first result, starting again would repeat what the caller already has.
    """

    def __init__(
        self,
        options: ConnectOptions | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float | None = 120.0,
        on_retry: RetryListener | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options or ConnectOptions()
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self._on_retry = on_retry
        self._sleep = sleep
        self._channel = self.options.open_channel()
        self.stt = stt_pb2_grpc.SpeechToTextStub(self._channel)
        self.tts = tts_pb2_grpc.TextToSpeechStub(self._channel)
        self.jobs = jobs_pb2_grpc.JobsStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> SpeechClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- speech to text ---------------------------------------------------------------------
    def transcribe(
        self, audio: bytes, config: stt_pb2.RecognitionConfig | None = None
    ) -> stt_pb2.TranscribeResponse:
        """A whole recording (WAV, FLAC, MP3, OGG/Opus detected; raw PCM with ``config``)."""
        request = stt_pb2.TranscribeRequest(audio=audio, config=config)
        return self._unary(self.stt.Transcribe, request)

    def stream_transcribe(
        self,
        config: stt_pb2.StreamingRecognitionConfig,
        audio: Callable[[], Iterable[bytes]],
    ) -> Iterator[stt_pb2.StreamingTranscribeResponse]:
        """Results of a StreamingTranscribe fed by ``audio()`` (called again on a retry, so
        it must replay from the start: a file, not a live microphone)."""

        def requests() -> Iterator[stt_pb2.StreamingTranscribeRequest]:
            yield stt_pb2.StreamingTranscribeRequest(streaming_config=config)
            for chunk in audio():
                yield stt_pb2.StreamingTranscribeRequest(audio_content=chunk)

        return self._streaming(lambda **kw: self.stt.StreamingTranscribe(requests(), **kw))

    # -- text to speech ---------------------------------------------------------------------
    def synthesize(self, request: tts_pb2.SynthesizeRequest) -> tts_pb2.SynthesizeResponse:
        return self._unary(self.tts.Synthesize, request)

    def stream_synthesize(
        self, request: tts_pb2.StreamingSynthesizeRequest
    ) -> Iterator[tts_pb2.StreamingSynthesizeResponse]:
        """One response per sentence, as soon as each is synthesized."""
        return self._streaming(lambda **kw: self.tts.StreamingSynthesize(request, **kw))

    # -- the call loops ---------------------------------------------------------------------
    def _unary(self, method: Callable[..., Response], request: Any) -> Response:
        deadline = Deadline(self.timeout_s)
        attempt = 1
        while True:
            try:
                return method(request, **self._call_options(deadline))
            except grpc.RpcError as error:
                self._wait_or_raise(error, attempt, deadline)
                attempt += 1

    def _streaming(self, start: Callable[..., Iterator[Response]]) -> Iterator[Response]:
        deadline = Deadline(self.timeout_s)
        attempt = 1
        while True:
            received = False
            try:
                for response in start(**self._call_options(deadline)):
                    received = True
                    yield response
                return
            except grpc.RpcError as error:
                if received:
                    raise
                self._wait_or_raise(error, attempt, deadline)
                attempt += 1

    def _call_options(self, deadline: Deadline) -> dict[str, Any]:
        return {"metadata": self.options.metadata(), "timeout": deadline.remaining()}

    def _wait_or_raise(self, error: grpc.RpcError, attempt: int, deadline: Deadline) -> None:
        retry = next_retry(error, attempt, self.retry, deadline)
        if retry is None:
            raise error
        if self._on_retry is not None:
            self._on_retry(retry)
        self._sleep(retry.delay_s)
