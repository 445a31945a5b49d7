"""Fixtures the TTS server tests share: one real server (STT and TTS) per test module."""

from __future__ import annotations

import pytest
import pytest_asyncio

from speech.v1 import stt_pb2_grpc, tts_pb2_grpc
from tests.support.server import running_server
from tests.support.server import test_settings as server_settings


@pytest_asyncio.fixture(scope="module")
async def server():
    """STT (tiny.en, one instance) and TTS, as a module's tests talk to them."""
    settings = server_settings(["stt", "tts"])
    settings.server.max_connection_age_s = 0  # one channel serves the whole module
    settings.stt.models = ["tiny.en"]
    settings.stt.default_model = "tiny.en"
    settings.stt.instances = 1
    async with running_server(settings) as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def channel(server):
    async with server.channel(**{"grpc.max_receive_message_length": 64 << 20}) as channel:
        yield channel


@pytest.fixture(scope="module")
def tts(channel):
    return tts_pb2_grpc.TextToSpeechStub(channel)


@pytest.fixture(scope="module")
def stt(channel):
    return stt_pb2_grpc.SpeechToTextStub(channel)
