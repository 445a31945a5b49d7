"""One real speech server (STT tiny.en + Piper, auth on) for every client test, and the
recording the clients transcribe."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Clip
from tests.support.server import ServerProcess, server_process

#: The clients' own token, and one whose single stream slot the retry tests hold.
TOKEN = "clients-token"
HELD_TOKEN = "held-token"
#: Words of the reference transcript that tiny.en gets right on this recording.
CLIP_NAME = "sense_and_sensibility_01_austen_64kb-0920"
EXPECTED_WORDS = ("married", "amiable", "woman", "respectable")
#: Two sentences, so StreamingSynthesize answers in two parts.
SPEECH_TEXT = "Tell me about a project you are proud of. What did you learn?"
PROTO_ROOT = Path(__file__).resolve().parents[2] / "protos"


@pytest.fixture(scope="package")  # shared by the package, stopped when it is done
def client_server() -> Iterator[ServerProcess]:
    env = {
        "SPEECH_SERVER__AUTH_TOKENS": json.dumps([TOKEN, HELD_TOKEN]),
        "SPEECH_SERVER__MAX_CONNECTION_AGE_S": "0",
        "SPEECH_STT__INSTANCES": "1",
        "SPEECH_STT__MAX_STREAMS_PER_CALLER": "1",
        "SPEECH_TTS__ENGINES": '["piper"]',
        "SPEECH_TTS__PIPER_INSTANCES": "1",
    }
    with server_process(("--services", "stt,tts"), env=env) as server:
        yield server


@pytest.fixture(scope="session")
def clip(librivox_clips: list[Clip]) -> Clip:
    found = next(c for c in librivox_clips if c.path.stem == CLIP_NAME)
    assert all(word in found.reference.split() for word in EXPECTED_WORDS)
    return found


def has_words(text: str, words: tuple[str, ...] = EXPECTED_WORDS) -> bool:
    return set(words) <= set(re.findall(r"[a-z]+", text.lower()))


@dataclass(frozen=True)
class Service:
    name: str
    rpcs: tuple[str, ...]


def proto_services() -> list[Service]:
    """Every service and its RPCs, read from protos/ itself (what generation must cover)."""
    services = []
    for proto in sorted(PROTO_ROOT.rglob("*.proto")):
        text = proto.read_text()
        for match in re.finditer(r"^service (\w+) \{(.*?)^\}", text, re.M | re.S):
            rpcs = tuple(re.findall(r"^\s*rpc (\w+)\(", match.group(2), re.M))
            services.append(Service(match.group(1), rpcs))
    return services
