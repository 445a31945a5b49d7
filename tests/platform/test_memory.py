"""What keeps a server's resident memory small: fewer malloc heaps, and a server loads
only the libraries its configuration uses (see speech_platform/memory.py)."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import weakref

from speech_platform.memory import IdleTrim, limit_malloc_arenas


def test_malloc_arenas_are_limited_on_glibc() -> None:
    assert limit_malloc_arenas(2) is True


def test_a_tts_server_without_redis_loads_neither_redis_nor_pyav() -> None:
    code = (
        "import sys\n"
        "from speech_platform.cache.factory import build_cache\n"
        "from speech_platform.config import CacheSettings\n"
        "import speech_server.server, tts_service.service, tts_service.synthesizer\n"
        "from tts_service.audio_encoding import AudioPipeline, Encoding, resolve_output\n"
        "assert build_cache(CacheSettings(backend='memory')) is not None\n"
        "wav = resolve_output(Encoding.WAV, 0, 22050)\n"
        "pipeline = AudioPipeline(22050, wav, 0.0, streaming=False)\n"
        "pipeline.push(__import__('numpy').zeros(2205, dtype='float32'))\n"
        "print(sorted(m for m in ('redis', 'av', 'ctranslate2') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_trim_gives_a_bursts_freed_heap_back_to_the_os() -> None:
    # 200 MB in 64 KiB blocks (under malloc's mmap threshold, so they come from the heap),
    # all freed but the last, which pins the heap's top: glibc keeps the rest resident
    # until malloc_trim.
    code = (
        "import numpy as np\n"
        "from speech_platform.memory import trim_free_memory\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * 4096 >> 20\n"
        "blocks = [np.ones(8192) for _ in range(3200)]\n"
        "pin = blocks[-1]\n"
        "del blocks\n"
        "before = rss()\n"
        "assert trim_free_memory()\n"
        "print(before, rss())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = map(int, out.stdout.split())
    assert before - after > 150, (before, after)


async def test_idle_trim_trims_once_after_work_and_never_while_busy() -> None:
    state: dict[str, int] = {"activity": 0, "busy": 1}
    trim = IdleTrim(lambda: state["activity"], lambda: state["busy"] > 0, interval_s=0.001)
    task = asyncio.create_task(trim.run())
    try:
        state["activity"] = 3  # work happened, still in flight: no trim
        for _ in range(50):
            await asyncio.sleep(0.002)  # let a few periods pass (the trimmer's own clock)
        assert trim.trims == 0
        state["busy"] = 0
        async with asyncio.timeout(10):
            while trim.trims == 0:  # noqa: ASYNC110 - polling the condition, bounded
                await asyncio.sleep(0.001)
        for _ in range(50):
            await asyncio.sleep(0.002)
        assert trim.trims == 1  # idle with no new work: nothing more to give back
    finally:
        task.cancel()


async def test_idle_trim_collects_cycles_that_hold_a_requests_memory() -> None:
    """A refused request's exception keeps its frames (and their audio) in a cycle; the
    trim collects it before giving the heap back."""

    class Held:
        def __init__(self) -> None:
            self.audio = bytes(8 << 20)
            self.me = self  # a cycle: only the garbage collector frees it

    gc.disable()  # as in an idle server, where no allocation triggers a collection
    try:
        held = Held()
        gone = weakref.ref(held)
        del held
        assert gone() is not None
        state = {"activity": 1}
        trim = IdleTrim(lambda: state["activity"], lambda: False, interval_s=0.001)
        state["activity"] = 2
        task = asyncio.create_task(trim.run())
        try:
            async with asyncio.timeout(10):
                while trim.trims == 0:  # noqa: ASYNC110 - polling the condition, bounded
                    await asyncio.sleep(0.001)
        finally:
            task.cancel()
        assert gone() is None
    finally:
        gc.enable()
