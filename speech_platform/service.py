"""How a speech service plugs into the shared server.

Each service package (stt_service, tts_service, speech_jobs) exposes
``build(ctx: ServiceContext) -> SpeechService``; the composition root (speech_server.registry)
names them. The server calls ``register`` before it
starts listening, reports the service NOT_SERVING in grpc.health.v1 until ``start`` (model
loading) returns, and calls ``stop`` after draining.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import grpc

from speech_platform.budget import MemoryBudget
from speech_platform.cache import ResponseCache
from speech_platform.config import Settings


class SpeechService(Protocol):
    #: Short name used in config and logs: "stt", "tts", "jobs".
    name: str
    #: Fully qualified gRPC service names it serves, e.g. "speech.v1.SpeechToText".
    grpc_service_names: tuple[str, ...]

    def register(self, server: grpc.aio.Server) -> None:
        """Adds the servicer(s) to the server; must not block or load models."""

    async def start(self) -> None:
        """Loads models and starts batchers; the service is SERVING once this returns."""

    async def stop(self, grace_s: float) -> None:
        """Finishes in-flight work within grace_s, then frees models."""


@dataclass
class ServiceContext:
    """What the server shares with every service it hosts."""

    settings: Settings
    #: The response cache (in-process LRU, Redis or both); None when caching is off.
    cache: ResponseCache | None = None
    #: Other services by name, for the ones that reuse engines (jobs reuses stt and tts).
    services: dict[str, SpeechService] = field(default_factory=dict)
    #: Bytes held by requests in flight, server-wide (server.memory_budget_mb).
    memory: MemoryBudget = field(default_factory=MemoryBudget)
