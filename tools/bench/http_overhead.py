"""What the OpenAI-compatible HTTP door costs next to gRPC, on the same server.

One ``speech-server`` (STT, tiny.en, in-memory cache) serves both doors; the request is
the cache-hit scenario's 5 s WAV, so the engines do no work and what is left is each door's
own cost: parsing (protobuf vs multipart), routing, the cache lookup both share, and the
answer (protobuf vs JSON). Both clients send a body built once (pre-serialized protobuf; a
pre-encoded multipart form, sent by a minimal HTTP/1.1 client) over kept-alive connections,
in the same process, so they cost the machine alike; the two doors are measured in
alternating rounds of one run, so drift and other load hit both.

* p50/p95 latency, one request at a time (``--sequential`` each round);
* throughput with ``--concurrency`` closed-loop clients for ``--window`` seconds.

    python -m tools.bench.http_overhead [--rounds 3] [--out bench-results/http-....json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from speech.v1 import stt_pb2
from tools.bench import procs, workload
from tools.bench.stats import LatencySummary

TRANSCRIBE = "/speech.v1.SpeechToText/Transcribe"
BOUNDARY = "speech-bench-boundary"

Call = Callable[[], Awaitable[None]]


def multipart_body(wav: bytes) -> bytes:
    """The transcription form, encoded once: model, language, response_format, file."""
    parts = []
    for name, value in (("model", "whisper-1"), ("language", "en"), ("response_format", "json")):
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            .encode()
        )
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n".encode() + wav + b"\r\n"
    )
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts)


class KeptAliveConnection:
    """A minimal HTTP/1.1 client on one kept-alive connection: the request bytes are built
    once, the answer read by its Content-Length. (httpx spends more CPU per request than
    the server's door does; on a 2-core machine that would be measured instead.)"""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self._address = (host, port)
        self._request = request
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def call(self) -> bytes:
        try:
            return await self._call()
        except (asyncio.IncompleteReadError, ConnectionError):
            # The server closed a connection that sat idle (keep-alive timeout): reconnect,
            # as any pooled client does.
            self.close()
            self._streams = None
            return await self._call()

    async def _call(self) -> bytes:
        if self._streams is None:
            self._streams = await asyncio.open_connection(*self._address)
        reader, writer = self._streams
        writer.write(self._request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise RuntimeError(f"HTTP {status.decode()}: {head[:200]!r}")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return await reader.readexactly(length)

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()


class ConnectionPool:
    """One kept-alive connection per concurrent client (as a pooled HTTP client keeps)."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self._make = lambda: KeptAliveConnection(host, port, request)
        self._idle: list[KeptAliveConnection] = []
        self._all: list[KeptAliveConnection] = []

    async def call(self) -> bytes:
        connection = self._idle.pop() if self._idle else self._new()
        try:
            return await connection.call()
        finally:
            self._idle.append(connection)

    def _new(self) -> KeptAliveConnection:
        connection = self._make()
        self._all.append(connection)
        return connection

    def close(self) -> None:
        for connection in self._all:
            connection.close()


def http_request(host: str, port: int, body: bytes) -> bytes:
    head = (
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def sequential(call: Call, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - started)
    return latencies


async def closed_loop(call: Call, concurrency: int, window_s: float, warmup_s: float) -> float:
    """Answers per second inside the window (after the warm-up) with ``concurrency`` clients."""
    loop = asyncio.get_running_loop()
    begin = loop.time() + warmup_s
    end = begin + window_s
    done = 0

    async def client() -> None:
        nonlocal done
        while loop.time() < end:
            await call()
            if begin <= loop.time() <= end:
                done += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done / window_s


async def measure(
    args: argparse.Namespace, server: procs.ServerProcess, http_port: int
) -> dict[str, Any]:
    clip = workload.five_second_clip()
    wav = clip.wav_bytes()
    request = stt_pb2.TranscribeRequest(
        config=stt_pb2.RecognitionConfig(language_code="en"), audio=wav
    ).SerializeToString()
    pool = ConnectionPool(
        procs.LOOPBACK, http_port, http_request(procs.LOOPBACK, http_port, multipart_body(wav))
    )
    async with grpc.aio.insecure_channel(server.address) as channel:
        transcribe = channel.unary_unary(TRANSCRIBE)

        async def grpc_call() -> None:
            data = await transcribe(request, timeout=60)
            assert stt_pb2.TranscribeResponse.FromString(data).cache_hit

        async def http_call() -> None:
            assert json.loads(await pool.call())["text"]

        await transcribe(request, timeout=60)  # the miss that fills the cache
        calls = {"grpc": grpc_call, "http": http_call}
        for call in calls.values():  # warm connections and code paths
            await sequential(call, 5)
        latencies: dict[str, list[float]] = {name: [] for name in calls}
        throughput: dict[str, list[float]] = {name: [] for name in calls}
        cpu_ms: dict[str, list[float]] = {name: [] for name in calls}
        client_ms: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.rounds):
            for name, call in calls.items():
                latencies[name] += await sequential(call, args.sequential)
                cpu_before = server.cpu_seconds() or 0.0
                client_before = time.process_time()
                rate = await closed_loop(call, args.concurrency, args.window, warmup_s=1.0)
                cpu_used = (server.cpu_seconds() or 0.0) - cpu_before
                client_used = time.process_time() - client_before
                throughput[name].append(round(rate, 1))
                # Server CPU over warm-up and window, per answer of the window (an upper
                # bound: the warm-up's answers are not counted).
                cpu_ms[name].append(round(cpu_used * 1000 / (rate * args.window), 3))
                client_ms[name].append(round(client_used * 1000 / (rate * args.window), 3))
        pool.close()
    return {
        name: {
            "sequential": LatencySummary.of(latencies[name]).as_dict(),
            f"throughput_c{args.concurrency}_per_s": sorted(throughput[name]),
            "server_cpu_ms_per_answer": sorted(cpu_ms[name]),
            "client_cpu_ms_per_answer": sorted(client_ms[name]),
        }
        for name in calls
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    http_port = procs.free_port()
    config = {"server": {"http_port": http_port}, "cache": {"backend": "memory"},
              "stt": {"instances": 1}}  # fmt: skip
    with tempfile.TemporaryDirectory() as logs:
        server = procs.speech_server("http-overhead", config, Path(logs), services=["stt"])
        with server.start():
            result = asyncio.run(measure(args, server, http_port))
    document = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "request": "5 s WAV, STT Transcribe / POST /v1/audio/transcriptions, cache hit",
        "rounds": args.rounds,
        "window_s": args.window,
        "results": result,
    }
    text = json.dumps(document, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
