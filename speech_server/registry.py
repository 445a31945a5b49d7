"""The services a speech server can host, by their name in ``server.services``.

An explicit table of build functions: adding a service is one function and one line here
(and its name in ``speech_platform.config.ServiceName``).

Each build function imports its service when it is called, not when this module is: a server
loads only the libraries of the services it hosts (a TTS pod never loads CTranslate2, PyAV
or the Redis client; tests/platform/test_memory.py holds this). These imports point down
the layers, from the composition root to a service, and are checked by mypy like any
other; they are not strings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from speech_platform.config import ServiceName
from speech_platform.service import ServiceContext, SpeechService

BuildService = Callable[[ServiceContext], SpeechService]


def build_stt(ctx: ServiceContext) -> SpeechService:
    from stt_service.service import build

    return build(ctx)


def build_tts(ctx: ServiceContext) -> SpeechService:
    from tts_service.service import build

    return build(ctx)


def build_jobs(ctx: ServiceContext) -> SpeechService:
    from speech_jobs.service import build

    return build(ctx)


#: Service name -> its build function. Every configured service is built before any
#: starts, so jobs finds the STT and TTS services of its process in ``ctx.services``.
SERVICES: Mapping[ServiceName, BuildService] = {
    "stt": build_stt,
    "tts": build_tts,
    "jobs": build_jobs,
}
