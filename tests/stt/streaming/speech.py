"""Live-microphone workloads for the streaming tests: real LibriVox speech, joined with
pauses, sent in chunks paced like a microphone (pacing the *client* is the workload, not
synchronisation), and the text normalisation used to score the transcripts."""

from __future__ import annotations

import asyncio
import io
import re
import wave
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import grpc
import jiwer
import numpy as np

from speech.v1 import common_pb2, stt_pb2, stt_pb2_grpc

RATE = 16000
LINEAR16 = common_pb2.AUDIO_ENCODING_LINEAR16
MULAW = common_pb2.AUDIO_ENCODING_MULAW


def read_wav_pcm16(path: Path) -> np.ndarray:
    with wave.open(str(path)) as reader:
        assert reader.getsampwidth() == 2 and reader.getnchannels() == 1
        assert reader.getframerate() == RATE
        return np.frombuffer(reader.readframes(reader.getnframes()), "<i2")


@dataclass(frozen=True)
class SpokenStream:
    """Clips joined with silence: 16 kHz s16le samples and where each clip lies."""

    pcm: np.ndarray
    references: tuple[str, ...]
    #: (start, end) seconds of each clip in the stream.
    spans: tuple[tuple[float, float], ...]

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / RATE

    def linear16(self) -> bytes:
        return self.pcm.astype("<i2").tobytes()

    def mulaw_8k(self) -> bytes:
        """The same speech as G.711 mu-law at 8 kHz (telephony), encoded by FFmpeg."""
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mulaw") as output:
            stream = output.add_stream("pcm_mulaw", rate=8000, layout="mono")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
            frame = av.AudioFrame.from_ndarray(
                self.pcm.astype("<i2")[None, :], format="s16", layout="mono"
            )
            frame.sample_rate = RATE
            for converted in [*resampler.resample(frame), *resampler.resample(None)]:
                for packet in stream.encode(converted):
                    output.mux(packet)
            for packet in stream.encode(None):
                output.mux(packet)
        return buffer.getvalue()


def join_clips(
    clips: Sequence[tuple[np.ndarray, str]], pause_s: float = 1.0, lead_s: float = 0.5
) -> SpokenStream:
    pieces = [np.zeros(int(lead_s * RATE), "<i2")]
    spans = []
    position = len(pieces[0])
    for pcm, _ in clips:
        spans.append((position / RATE, (position + len(pcm)) / RATE))
        pieces += [pcm, np.zeros(int(pause_s * RATE), "<i2")]
        position += len(pcm) + int(pause_s * RATE)
    return SpokenStream(np.concatenate(pieces), tuple(r for _, r in clips), tuple(spans))


_PUNCTUATION = re.compile(r"[^\w\s']")
_SPELLINGS = {"mr": "mister", "mrs": "missus", "dr": "doctor"}


def normalise(text: str) -> str:
    """Lower case, hyphens as spaces, no punctuation, Mr. -> mister (as the references)."""
    words = _PUNCTUATION.sub(" ", text.lower().replace("-", " ")).split()
    return " ".join(_SPELLINGS.get(w, w) for w in words)


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """WER of the whole stream: every reference against every hypothesis, joined."""
    return float(
        jiwer.wer(normalise(" ".join(references)), normalise(" ".join(h for h in hypotheses if h)))
    )


def streaming_config(
    encoding: int = LINEAR16,
    sample_rate: int = RATE,
    *,
    interim_results: bool = True,
    words: bool = True,
    **streaming: int,
) -> stt_pb2.StreamingTranscribeRequest:
    return stt_pb2.StreamingTranscribeRequest(
        streaming_config=stt_pb2.StreamingRecognitionConfig(
            config=stt_pb2.RecognitionConfig(
                encoding=encoding,  # type: ignore[arg-type]
                sample_rate_hertz=sample_rate,
                language_code="en",
                enable_word_time_offsets=words,
            ),
            interim_results=interim_results,
            **streaming,
        )
    )


async def microphone(
    config: stt_pb2.StreamingTranscribeRequest,
    audio: bytes,
    *,
    bytes_per_second: float,
    chunk_bytes: int,
    speed: float = 1.0,
    sent_at: list[float] | None = None,
) -> AsyncIterator[stt_pb2.StreamingTranscribeRequest]:
    """The config, then ``audio`` in chunks, each sent when a live source would have it.

    ``speed`` > 1 plays faster than real time. ``sent_at`` collects loop.time() after each
    chunk: [i] is when byte offset (i + 1) * chunk_bytes had been sent.
    """
    loop = asyncio.get_running_loop()
    yield config
    started = loop.time()
    for offset in range(0, len(audio), chunk_bytes):
        chunk = audio[offset : offset + chunk_bytes]
        due = started + (offset + len(chunk)) / bytes_per_second / speed
        await asyncio.sleep(max(0.0, due - loop.time()))
        yield stt_pb2.StreamingTranscribeRequest(audio_content=chunk)
        if sent_at is not None:
            sent_at.append(loop.time())


@dataclass
class Received:
    response: stt_pb2.StreamingTranscribeResponse
    at: float


async def collect(
    channel: grpc.aio.Channel, requests: AsyncIterator[stt_pb2.StreamingTranscribeRequest]
) -> list[Received]:
    """Every response of one stream, with loop.time() at arrival."""
    loop = asyncio.get_running_loop()
    stub = stt_pb2_grpc.SpeechToTextStub(channel)
    received = []
    async for response in stub.StreamingTranscribe(requests):
        received.append(Received(response, loop.time()))
    return received


def finals(received: Sequence[Received]) -> list[stt_pb2.StreamingTranscribeResponse]:
    return [r.response for r in received if r.response.is_final]
