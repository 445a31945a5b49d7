"""Sends one Transcribe request many times at once from its own process, so that a test's
in-process server can measure its own memory without the client's copies of the requests.

    python -m tests.support.upload_burst ADDRESS COUNT < serialized TranscribeRequest

Prints one JSON line: ``[[status code name, details], ...]``, one per call.
"""

from __future__ import annotations

import asyncio
import json
import sys

import grpc

TRANSCRIBE = "/speech.v1.SpeechToText/Transcribe"


async def burst(address: str, count: int, body: bytes) -> list[tuple[str, str]]:
    options = [("grpc.max_send_message_length", 2**31 - 1)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        call = channel.unary_unary(TRANSCRIBE)  # bytes in, bytes out: sent as serialized

        async def one() -> tuple[str, str]:
            try:
                await call(body, timeout=120.0)
            except grpc.aio.AioRpcError as error:
                return error.code().name, error.details() or ""
            return "OK", ""

        return list(await asyncio.gather(*(one() for _ in range(count))))


if __name__ == "__main__":
    outcomes = asyncio.run(burst(sys.argv[1], int(sys.argv[2]), sys.stdin.buffer.read()))
    print(json.dumps(outcomes))
