"""Sixteen live streams at once on the shared batcher: every stream gets its own correct
finals, and decodes of different streams leave in the same batches.

The server's batcher is configured to batch (8 windows, 10 ms wait, 8 decodes of streams
in flight), as on a GPU: the CPU default decodes one window per call, because a batch
costs a CPU as much as its windows alone (stt.batcher, measured by tools.measure.stt),
so there would be nothing to pack.
Each stream is two LibriVox sentences with a pause, paced at 1.5x real time (faster than
a microphone, to keep the suite short; the server does not know the difference).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.stt.streaming.speech import (
    Received,
    SpokenStream,
    collect,
    finals,
    join_clips,
    microphone,
    streaming_config,
    word_error_rate,
)
from tests.support.server import (
    RunningServer,
    histogram_buckets,
    metric_samples,
    running_server,
)
from tests.support.server import test_settings as server_settings

STREAMS = 16
SPEED = 1.5
BATCH_SIZE = "speech_batcher_batch_size"
MODEL_LABEL = "whisper-tiny.en"


@pytest.fixture(scope="module")
async def batching_server() -> AsyncIterator[RunningServer]:
    settings = server_settings(["stt"])
    settings.stt.batcher.max_batch_size = 8
    settings.stt.batcher.max_queue_delay_ms = 10.0
    # As on a GPU, interims may queue beside finals (the CPU default keeps an instance
    # free for finals, so on a fast machine decodes rarely meet and nothing would batch).
    settings.stt.stream_decode_capacity = 8
    async with running_server(settings) as server:
        yield server


async def one_stream(
    server: RunningServer, spoken: SpokenStream, start_after_s: float
) -> list[Received]:
    await asyncio.sleep(start_after_s)  # a caller that comes later (workload, not sync)
    async with server.channel() as channel:
        return await collect(
            channel,
            microphone(
                streaming_config(),
                spoken.linear16(),
                bytes_per_second=32000,
                chunk_bytes=3200,
                speed=SPEED,
            ),
        )


async def test_sixteen_live_streams_share_batches_and_each_gets_its_finals(
    batching_server: RunningServer, librivox_pcm: list
) -> None:
    server = batching_server
    clips = len(librivox_pcm)
    workloads = [
        join_clips([librivox_pcm[i % clips], librivox_pcm[(i + 2) % clips]], pause_s=1.0)
        for i in range(STREAMS)
    ]
    before = await server.metrics_text()
    results = await asyncio.gather(
        *(one_stream(server, spoken, start_after_s=0.05 * i) for i, spoken in enumerate(workloads))
    )
    after = await server.metrics_text()
    for spoken, received in zip(workloads, results, strict=True):
        texts = [r.text for r in finals(received)]
        assert len(texts) == 2, texts
        assert word_error_rate(spoken.references, texts) <= 0.2, (spoken.references, texts)
    batches = metric_samples(after, f"{BATCH_SIZE}_count", model=MODEL_LABEL) - metric_samples(
        before, f"{BATCH_SIZE}_count", model=MODEL_LABEL
    )
    singles = (
        histogram_buckets(after, BATCH_SIZE, model=MODEL_LABEL)[1.0]
        - histogram_buckets(before, BATCH_SIZE, model=MODEL_LABEL)[1.0]
    )
    items = metric_samples(after, f"{BATCH_SIZE}_sum", model=MODEL_LABEL) - metric_samples(
        before, f"{BATCH_SIZE}_sum", model=MODEL_LABEL
    )
    assert batches > singles, "every decode left in a batch of its own"
    # Each of the 32 finals was computed; interims came on top, packed with them.
    assert items >= STREAMS * 2
    assert items / batches > 1.0
    assert metric_samples(after, "speech_stt_streams_active") == 0
