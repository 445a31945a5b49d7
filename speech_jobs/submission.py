"""Checks a submit request and turns it into what the store keeps: the spec and the audio.

Everything a caller can get wrong is refused here, before a job exists, with
INVALID_ARGUMENT and a message naming the field; what only a worker can find out (audio
that does not decode) fails the job later, with the reason in its ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass

from speech.v1 import jobs_pb2, tts_pb2
from speech_jobs.engines import SynthesisEngine, TranscriptionEngine
from speech_jobs.sources import check_readable, check_within_roots
from speech_platform.config import Settings
from speech_platform.errors import FailedPrecondition, InvalidArgument

#: Audio in the job result is for small jobs: the whole result is one message (and one
#: Redis value). Larger jobs still land in the cache, where Synthesize serves each text.
MAX_TEXTS_WITH_AUDIO = 200


@dataclass(frozen=True)
class Submission:
    spec: bytes
    audio: bytes | None


def transcription_submission(
    request: jobs_pb2.SubmitTranscriptionJobRequest,
    settings: Settings,
    engine: TranscriptionEngine | None,
    *,
    in_process: bool,
) -> Submission:
    """``in_process``: this process runs the job, so it can check a URI and needs an engine."""
    limit = settings.jobs.max_audio_bytes
    source = request.WhichOneof("source")
    audio: bytes | None = None
    if source == "audio" and (audio := request.audio):  # one read: each read is a copy
        if len(audio) > limit:
            raise InvalidArgument(
                f"audio is {len(audio)} bytes; jobs accept at most {limit} bytes "
                "(put larger files on a shared volume and send a file:// uri)"
            )
    elif source == "uri" and request.uri:
        roots = settings.jobs.file_roots
        if in_process:
            check_readable(request.uri, roots, limit)
        else:
            check_within_roots(request.uri, roots, limit)
    else:
        raise InvalidArgument("no audio: set audio (the bytes) or uri (file:///...)")
    if engine is not None:
        engine.check(request.config)
    elif in_process:
        raise FailedPrecondition(
            "this server runs no stt service, so it cannot run transcription jobs; "
            "enable stt or use the celery jobs backend"
        )
    spec = jobs_pb2.SubmitTranscriptionJobRequest()
    spec.CopyFrom(request)
    if audio is not None:
        spec.ClearField("audio")
    return Submission(spec.SerializeToString(), audio)


def synthesis_submission(
    request: jobs_pb2.SubmitSynthesisJobRequest,
    settings: Settings,
    engine: SynthesisEngine | None,
    *,
    in_process: bool,
) -> Submission:
    if not request.texts:
        raise InvalidArgument("texts is empty: give at least one text to synthesize")
    if len(request.texts) > settings.jobs.max_texts:
        raise InvalidArgument(
            f"{len(request.texts)} texts; a job takes at most {settings.jobs.max_texts}"
        )
    if request.include_audio and len(request.texts) > MAX_TEXTS_WITH_AUDIO:
        raise InvalidArgument(
            f"include_audio is limited to {MAX_TEXTS_WITH_AUDIO} texts per job ("
            f"{len(request.texts)} given); submit without it and fetch each text's audio "
            "from the cache with Synthesize"
        )
    max_chars = settings.tts.max_text_chars
    for index, text in enumerate(request.texts):
        if not text.strip():
            raise InvalidArgument(f"texts[{index}] is empty")
        if len(text) > max_chars:
            raise InvalidArgument(
                f"texts[{index}] has {len(text)} characters; at most {max_chars} are allowed"
            )
    if request.tier not in tts_pb2.VoiceTier.values():
        raise InvalidArgument(f"tier: unknown VoiceTier value {request.tier}")
    if engine is not None:
        engine.check(request)
    elif in_process:
        raise FailedPrecondition(
            "this server runs no tts service, so it cannot run synthesis jobs; "
            "enable tts or use the celery jobs backend"
        )
    return Submission(request.SerializeToString(), None)
