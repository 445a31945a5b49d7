"""The plain-server baseline answers like faster-whisper's own transcribe (loads tiny.en)."""

from __future__ import annotations

import asyncio

import pytest

from tools.bench import procs, workload
from tools.bench.loadgen import TRANSCRIBE, Target, served_alone
from tools.bench.stats import transcript_words

pytestmark = pytest.mark.slow


def test_the_plain_server_transcribes_real_commands(tmp_path) -> None:
    clips = [workload.all_recordings()[name] for name in ("goforward", "cards-005")]
    requests = [workload.transcribe_request(clip) for clip in clips]
    with procs.plain_server(tmp_path) as server:
        server.start(120)
        texts = asyncio.run(served_alone(Target(server.address, TRANSCRIBE), requests * 2))
    assert len(texts) == 2  # identical requests are served alone once
    words = [transcript_words(texts[r.payload]) for r in requests]
    assert words[0] == ("go", "forward", "10", "meters")
    assert words[1][:3] == ("eight", "of", "spades")
