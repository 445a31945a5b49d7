"""``speech-cache-warm``: pre-synthesize a list of texts through a running server.

It calls the server's own Synthesize, so the normal cache path (key, TTL, Redis) stores the
audio and later requests for the same text, voice and format are hits; nothing here knows
the cache layout. Requests go at low priority by default so a warm-up never starves live
traffic, and a busy server (RESOURCE_EXHAUSTED, UNAVAILABLE) is retried with backoff.

    speech-cache-warm questions.txt --target speech-tts:50051 --voice en_US-joe-medium \\
        --encoding wav --concurrency 4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from tqdm import tqdm

from speech.v1 import common_pb2, tts_pb2, tts_pb2_grpc

_RETRYABLE = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}
_TIERS = {"unspecified": 0, "standard": 1, "high": 2}
_PRIORITIES = {"low": 1, "normal": 2, "high": 3}


@dataclass
class WarmOptions:
    voice: str = ""
    tier: str = "unspecified"
    encoding: str = "wav"
    sample_rate_hertz: int = 0
    speaking_rate: float = 0.0
    priority: str = "low"
    concurrency: int = 4
    timeout_s: float = 120.0
    retries: int = 3
    token: str = ""


@dataclass
class WarmSummary:
    hits: int = 0
    misses: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (text, reason)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.hits + self.misses + len(self.failures)

    def describe(self) -> str:
        return (
            f"warmed {self.total} texts in {self.seconds:.1f}s: {self.hits} already cached "
            f"(hits), {self.misses} synthesized (misses), {len(self.failures)} failed"
        )


def read_texts(lines: Sequence[str]) -> list[str]:
    """One text per line; blank lines are skipped and repeats sent once.

    >>> read_texts(["Hello.", "", "  Why us? ", "Hello."])
    ['Hello.', 'Why us?']
    """
    seen: dict[str, None] = {}
    for line in lines:
        text = line.strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)


def encoding_value(name: str) -> int:
    value = common_pb2.AudioEncoding.Value(f"AUDIO_ENCODING_{name.upper()}")
    if value == 0:
        raise ValueError("encoding must be named")
    return value


def build_request(text: str, options: WarmOptions) -> tts_pb2.SynthesizeRequest:
    return tts_pb2.SynthesizeRequest(
        text=text,
        voice=options.voice,
        tier=_TIERS[options.tier],  # type: ignore[arg-type]
        priority=_PRIORITIES[options.priority],  # type: ignore[arg-type]
        audio_config=tts_pb2.AudioConfig(
            encoding=encoding_value(options.encoding),  # type: ignore[arg-type]
            sample_rate_hertz=options.sample_rate_hertz,
            speaking_rate=options.speaking_rate,
        ),
    )


async def warm(
    channel: grpc.aio.Channel,
    texts: Sequence[str],
    options: WarmOptions,
    *,
    progress: bool = True,
) -> WarmSummary:
    """Synthesizes every text once (``concurrency`` at a time) and counts what the server
    reported: ``cache_hit`` true means it was already warm."""
    stub = tts_pb2_grpc.TextToSpeechStub(channel)
    metadata = (("authorization", f"Bearer {options.token}"),) if options.token else None
    summary = WarmSummary()
    pending: asyncio.Queue[str] = asyncio.Queue()
    for text in texts:
        pending.put_nowait(text)
    bar = tqdm(total=len(texts), unit="text", disable=not progress, file=sys.stderr)
    started = time.monotonic()

    async def one(text: str) -> None:
        request = build_request(text, options)
        for attempt in range(options.retries + 1):
            try:
                response = await stub.Synthesize(
                    request, timeout=options.timeout_s, metadata=metadata
                )
            except grpc.aio.AioRpcError as error:
                if error.code() in _RETRYABLE and attempt < options.retries:
                    await asyncio.sleep(min(0.5 * 2**attempt, 8.0))  # back off, then retry
                    continue
                summary.failures.append((text, f"{error.code().name}: {error.details()}"))
                return
            if response.cache_hit:
                summary.hits += 1
            else:
                summary.misses += 1
            return

    async def worker() -> None:
        while not pending.empty():
            text = pending.get_nowait()
            await one(text)
            bar.update(1)
            bar.set_postfix(hits=summary.hits, misses=summary.misses, failed=len(summary.failures))

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, options.concurrency))))
    finally:
        bar.close()
    summary.seconds = time.monotonic() - started
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speech-cache-warm",
        description="Pre-synthesize texts (one per line) through a running speech server so "
        "later requests for them are cache hits.",
    )
    parser.add_argument("file", help="text file, one text per line ('-' reads stdin)")
    parser.add_argument(
        "--target",
        default=os.environ.get("SPEECH_TARGET", "127.0.0.1:50051"),
        help="server address host:port (default $SPEECH_TARGET or 127.0.0.1:50051)",
    )
    parser.add_argument("--voice", default="", help="voice name (default: the tier's default)")
    parser.add_argument("--tier", choices=sorted(_TIERS), default="unspecified")
    parser.add_argument(
        "--encoding",
        default="wav",
        choices=["linear16", "mulaw", "wav", "flac", "mp3", "ogg_opus"],
        help="output encoding: must match what clients will ask for (default wav)",
    )
    parser.add_argument("--sample-rate", type=int, default=0, help="Hz (default: the voice's)")
    parser.add_argument("--speaking-rate", type=float, default=0.0, help="1.0 = normal")
    parser.add_argument("--priority", choices=sorted(_PRIORITIES), default="low")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--retries", type=int, default=3, help="on RESOURCE_EXHAUSTED/UNAVAILABLE")
    parser.add_argument(
        "--token", default=os.environ.get("SPEECH_TOKEN", ""), help="bearer token ($SPEECH_TOKEN)"
    )
    parser.add_argument("--tls", action="store_true", help="use TLS with the system roots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 all warmed, 1 some texts failed, 2 bad usage or unreadable file."""
    args = build_parser().parse_args(argv)
    if args.concurrency < 1:
        print("speech-cache-warm: --concurrency must be at least 1", file=sys.stderr)
        return 2
    try:
        lines = sys.stdin.readlines() if args.file == "-" else Path(args.file).read_text(
            encoding="utf-8"
        ).splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"speech-cache-warm: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    texts = read_texts(lines)
    if not texts:
        print("speech-cache-warm: no texts in the input", file=sys.stderr)
        return 2
    options = WarmOptions(
        voice=args.voice,
        tier=args.tier,
        encoding=args.encoding,
        sample_rate_hertz=args.sample_rate,
        speaking_rate=args.speaking_rate,
        priority=args.priority,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        retries=args.retries,
        token=args.token,
    )

    async def run() -> WarmSummary:
        if args.tls:
            channel = grpc.aio.secure_channel(args.target, grpc.ssl_channel_credentials())
        else:
            channel = grpc.aio.insecure_channel(args.target)
        async with channel:
            return await warm(channel, texts, options, progress=not args.no_progress)

    summary = asyncio.run(run())
    print(summary.describe())
    for text, reason in summary.failures[:20]:
        print(f"  failed: {text[:60]!r}: {reason}", file=sys.stderr)
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
