"""Each hostile input of issue 14, one at a time, against one real server with health polled
throughout: what the hostile caller was told, the slowest health answer while it ran, and
how far the server's resident memory rose.

    python -m tools.bench overload --mode hostile [--json out.json]

The server has the defaults of ``make run`` (STT and TTS). Health is asked every 20 ms on
its own connection, from a process other than the hostile caller's, for a second before
each case, during it and for a second after it; memory is the server's
peak (VmHWM, reset before each case) over its RSS just before. The cases:

- ``ellipsis_text``: Synthesize of 5,000 "…" (once a quadratic pattern on the loop);
- ``digits_text``: Synthesize of 5,000 digits (they expand to ~54,000 characters);
- ``wav_64mhz``: a 32 KB WAV whose header declares 64 MHz;
- ``flac_384khz``: 0.1 s of noise as FLAC at 384 kHz, ~64 KB (such a file once took +1 GB);
- ``not_utf8``: a SynthesizeRequest whose text is not UTF-8 (once UNKNOWN);
- ``streams_x100``: 100 concurrent StreamingTranscribe calls from one caller;
- ``uploads_30mib_x16``: 16 concurrent Transcribe calls of 30 MiB each (once 5.3 GB), over
  ``server.max_receive_message_bytes`` (25 MiB);
- ``uploads_24mib_x16``: the same just under that limit (786 s of 16 kHz WAV each, over
  ``stt.max_audio_seconds``): what gRPC reads whole before any handler can refuse.

Then RSS at the end and 30 s later (the idle trim should have given the burst back).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import multiprocessing as mp
import struct
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import av
import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speech.v1 import common_pb2, stt_pb2, stt_pb2_grpc, tts_pb2
from speech_platform.config import SttSettings
from tools.bench import procs

TRANSCRIBE = "/speech.v1.SpeechToText/Transcribe"
SYNTHESIZE = "/speech.v1.TextToSpeech/Synthesize"
MIB = 1 << 20
#: What one case's callers got: (status code name, details), one per call.
Outcomes = list[tuple[str, str]]


def _wav(rate: int, body: bytes) -> bytes:
    """A 16-bit mono PCM WAV whose header declares ``rate``."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", len(body)) + body
    )


def _flac(rate: int, seconds: float) -> bytes:
    """Noise encoded as FLAC at ``rate`` (PyAV)."""
    samples = np.random.default_rng(3).uniform(-0.1, 0.1, int(rate * seconds))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as output:
        stream = output.add_stream("flac", rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(
            samples.astype(np.float32)[None, :], format="fltp", layout="mono"
        )
        frame.sample_rate = rate
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for converted in resampler.resample(frame):
            for packet in stream.encode(converted):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()


def _transcribe(audio: bytes) -> bytes:
    request = stt_pb2.TranscribeRequest(
        audio=audio, config=stt_pb2.RecognitionConfig(skip_cache=True)
    )
    return request.SerializeToString()


def _synthesize(text: str) -> bytes:
    return tts_pb2.SynthesizeRequest(text=text, skip_cache=True).SerializeToString()


def _not_utf8() -> bytes:
    """Field 1 (text) of a SynthesizeRequest holding bytes that are not UTF-8."""
    text = b"\xff\xfe bad \xc3\x28"
    return bytes([0x0A, len(text)]) + text


async def _unary(channel: grpc.aio.Channel, method: str, body: bytes) -> tuple[str, str]:
    try:
        await channel.unary_unary(method)(body, timeout=120.0)
    except grpc.aio.AioRpcError as error:
        return error.code().name, error.details() or ""
    return "OK", ""


def _unary_case(
    method: str, body: bytes, copies: int = 1
) -> Callable[[str], Coroutine[Any, Any, Outcomes]]:
    async def case(address: str) -> Outcomes:
        options = [("grpc.max_send_message_length", 64 * MIB)]
        async with grpc.aio.insecure_channel(address, options=options) as channel:
            return list(
                await asyncio.gather(*(_unary(channel, method, body) for _ in range(copies)))
            )

    return case


async def _streams(address: str, count: int = 100) -> Outcomes:
    """``count`` streams opened at once by one caller; each sends its config and one
    chunk of silence, then holds until all but the per-caller cap have been answered
    (refused), then ends."""
    held = min(SttSettings().max_streams_per_caller, SttSettings().max_concurrent_streams)
    config = stt_pb2.StreamingTranscribeRequest(
        streaming_config=stt_pb2.StreamingRecognitionConfig(
            config=stt_pb2.RecognitionConfig(
                encoding=common_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000
            )
        )
    )
    silence = stt_pb2.StreamingTranscribeRequest(audio_content=bytes(3200))
    release, refused_all = asyncio.Event(), asyncio.Event()
    outcomes: Outcomes = []

    def answered(code: str, details: str) -> None:
        outcomes.append((code, details))
        if len(outcomes) >= count - held:
            refused_all.set()

    async with grpc.aio.insecure_channel(address) as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)

        async def requests() -> AsyncIterator[stt_pb2.StreamingTranscribeRequest]:
            yield config
            yield silence
            await release.wait()

        async def one() -> None:
            try:
                async for _ in stub.StreamingTranscribe(requests(), timeout=60.0):
                    pass
                answered("OK", "")
            except grpc.aio.AioRpcError as error:
                answered(error.code().name, error.details() or "")

        tasks = [asyncio.ensure_future(one()) for _ in range(count)]
        # The refused answer at once; the admitted hold until released (bounded wait).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(refused_all.wait(), 20.0)
        release.set()
        await asyncio.gather(*tasks)
    return outcomes


def cases() -> dict[str, Callable[[str], Coroutine[Any, Any, Outcomes]]]:
    wav_body = bytes(32 * 1024)
    noise = np.random.default_rng(7).integers(-3000, 3000, 15 * MIB, dtype=np.int16).tobytes()
    upload_30mib = _wav(16000, noise[: 30 * MIB - 44])
    upload_24mib = _wav(16000, noise[: 24 * MIB - 44])
    return {
        "ellipsis_text": _unary_case(SYNTHESIZE, _synthesize("…" * 5000)),
        "digits_text": _unary_case(SYNTHESIZE, _synthesize("1234567890" * 500)),
        "wav_64mhz": _unary_case(TRANSCRIBE, _transcribe(_wav(64_000_000, wav_body))),
        "flac_384khz": _unary_case(TRANSCRIBE, _transcribe(_flac(384_000, 0.1))),
        "not_utf8": _unary_case(SYNTHESIZE, _not_utf8()),
        "streams_x100": _streams,
        "uploads_30mib_x16": _unary_case(TRANSCRIBE, _transcribe(upload_30mib), copies=16),
        "uploads_24mib_x16": _unary_case(TRANSCRIBE, _transcribe(upload_24mib), copies=16),
    }


def _run_case(name: str, address: str) -> Outcomes:
    """One case, in the hostile caller's own process (see ``run``)."""
    return asyncio.run(cases()[name](address))


async def _health_while(
    address: str, work: Callable[[], Awaitable[Outcomes]]
) -> tuple[Outcomes, float]:
    """Runs ``work`` while health is asked every 20 ms; returns its outcomes and the
    slowest health answer (from a second before until a second after)."""
    worst = 0.0
    done = asyncio.Event()
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        await health.Check(health_pb2.HealthCheckRequest(), timeout=10.0)

        async def poll() -> None:
            nonlocal worst
            after: float | None = None
            while after is None or time.monotonic() < after:
                started = time.monotonic()
                await health.Check(health_pb2.HealthCheckRequest(), timeout=10.0)
                worst = max(worst, time.monotonic() - started)
                if done.is_set() and after is None:
                    after = time.monotonic() + 1.0
                await asyncio.sleep(0.02)  # the polling pace

        poller = asyncio.ensure_future(poll())
        await asyncio.sleep(1.0)  # a second of health before the case (the pace, as above)
        try:
            outcomes = await work()
        finally:
            done.set()
        await poller
    return outcomes, worst


def _reset_peak(pid: int) -> None:
    """Resets the kernel's resident high-water mark of ``pid`` (writes 5 to clear_refs)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _summary(outcomes: Outcomes) -> dict[str, Any]:
    codes = Counter(code for code, _ in outcomes)
    messages = sorted({message for _, message in outcomes if message})
    return {"codes": dict(codes), "messages": messages[:3]}


def run() -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="speech-hostile-"))
    report: dict[str, Any] = {}
    # The hostile caller runs in a process of its own: sending 16 x 30 MiB costs a client's
    # event loop hundreds of milliseconds, which health asked from the same loop would count
    # against the server.
    caller = concurrent.futures.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
    with caller, procs.speech_server("hostile", {}, log_dir, services=["stt", "tts"]) as server:
        server.start()
        caller.submit(int).result()  # the caller's process started before any case
        idle = server.rss_mb()
        for name in cases():
            before = server.rss_mb() or 0.0
            _reset_peak(server.pid)
            started = time.monotonic()

            def work(name: str = name) -> Awaitable[Outcomes]:
                return asyncio.wrap_future(caller.submit(_run_case, name, server.address))

            outcomes, health_worst = asyncio.run(_health_while(server.address, work))
            peak = server.record_peak_rss() or 0.0
            report[name] = {
                **_summary(outcomes),
                "seconds": round(time.monotonic() - started - 1.0, 2),  # less the second before
                "health_worst_ms": round(health_worst * 1000, 1),
                "rss_before_mb": round(before),
                "rss_growth_mb": round(max(peak - before, 0.0)),
            }
        report["rss_idle_mb"] = idle
        report["rss_end_mb"] = server.rss_mb()
        time.sleep(30)  # RSS 30 s after, as the issue asks (measurement, not sync)
        report["rss_30s_after_mb"] = server.rss_mb()
        report["server_log"] = str(server.log_path)
    return report
