"""What a caller may ask of a transcription, checked once at the edge.

``TranscribeOptions`` is what a request says (empty means "server default");
``DecodeOptions`` is what the engine runs with, every default filled in. The Transcriber
resolves one into the other against the loaded models, so the servicer, the Jobs service
and streaming all share the same rules and error messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from speech.v1 import stt_pb2
from speech_platform import priority
from speech_platform.errors import InvalidArgument

MIN_BEAM, MAX_BEAM = 1, 10
#: Most alternatives a request may ask for (the N-best comes from the beam, so a request
#: gets at most its beam size of them).
MAX_ALTERNATIVES = 10
MAX_PROMPT_CHARS = 2000
MAX_HOTWORDS = 100
MAX_HOTWORD_CHARS = 100
_LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}$")
#: Old or alternative ISO 639 codes that Whisper knows under another name.
_LANGUAGE_ALIASES = {"iw": "he", "in": "id", "ji": "yi", "jv": "jw", "nb": "no", "fil": "tl"}

#: speech.v1 Priority to the batcher's scale (the one table: speech_platform.priority).
batcher_priority = priority.from_proto



@dataclass(frozen=True)
class TranscribeOptions:
    """A request's recognition options, as given (empty or 0 = server default)."""

    model: str = ""
    #: BCP-47 or ISO 639-1; "" or "auto" = detect (multilingual) / the model's language.
    language: str = ""
    word_timestamps: bool = False
    beam_size: int = 0
    initial_prompt: str = ""
    hotwords: tuple[str, ...] = ()
    #: N-best transcripts wanted (0 = none; see stt_service/alternatives.py).
    max_alternatives: int = 0
    #: Transcribe each channel of multi-channel audio on its own (stt_service/channels.py).
    separate_channels: bool = False
    #: Attach a quality report (stt_service/quality.py).
    quality_report: bool = False
    #: "" or "transcribe" (what is said), or "translate" (into English).
    task: str = ""

    @classmethod
    def from_config(cls, config: stt_pb2.RecognitionConfig) -> TranscribeOptions:
        return cls(
            model=config.model.strip(),
            language=config.language_code,
            word_timestamps=config.enable_word_time_offsets,
            beam_size=config.beam_size,
            initial_prompt=config.initial_prompt,
            hotwords=tuple(config.hotwords),
            max_alternatives=config.max_alternatives,
            separate_channels=config.enable_separate_recognition_per_channel,
            quality_report=config.enable_quality_report,
            task=config.task,
        )


@dataclass(frozen=True)
class DecodeOptions:
    """Everything the engine needs for one window; hashable, so windows group by it."""

    #: ISO 639-1 code, or None to detect it (multilingual models only).
    language: str | None
    beam_size: int
    word_timestamps: bool = False
    initial_prompt: str = ""
    hotwords: tuple[str, ...] = field(default=())
    #: Hypotheses of the beam to return besides the transcript (0 = the transcript only);
    #: never more than ``beam_size``. It does not change the transcript itself.
    alternatives: int = 0
    #: "transcribe" or "translate" (Whisper's task token: translate writes English).
    task: str = "transcribe"


def parse_language(code: str) -> str | None:
    """ "de-DE" -> "de"; "" or "auto" -> None. Refuses anything that is not a language tag."""
    text = code.strip().lower().replace("_", "-")
    if text in ("", "auto"):
        return None
    primary = text.split("-", 1)[0]
    if not _LANGUAGE_TAG.match(primary):
        raise InvalidArgument(
            f"config.language_code {code!r} is not a BCP-47 or ISO 639-1 code "
            "(examples: 'en', 'de-DE', 'auto')"
        )
    return _LANGUAGE_ALIASES.get(primary, primary)


TASKS = ("transcribe", "translate")


def parse_task(task: str) -> str:
    """ "" -> "transcribe"; refuses anything but Whisper's two tasks."""
    text = task.strip().lower() or "transcribe"
    if text not in TASKS:
        raise InvalidArgument(
            f"config.task {task!r} is not one of {', '.join(TASKS)} ('' = transcribe)"
        )
    return text


def check_beam_size(beam_size: int, default: int) -> int:
    if beam_size == 0:
        return default
    if not MIN_BEAM <= beam_size <= MAX_BEAM:
        raise InvalidArgument(
            f"config.beam_size must lie in {MIN_BEAM}..{MAX_BEAM} (0 = server default "
            f"{default}), got {beam_size}"
        )
    return beam_size


def check_alternatives(max_alternatives: int, beam_size: int) -> int:
    """Hypotheses to ask the beam for: ``max_alternatives`` capped at the beam size
    (0 = none); refuses a value outside 0..MAX_ALTERNATIVES."""
    if not 0 <= max_alternatives <= MAX_ALTERNATIVES:
        raise InvalidArgument(
            f"config.max_alternatives must lie in 0..{MAX_ALTERNATIVES} (0 = none), "
            f"got {max_alternatives}"
        )
    return min(max_alternatives, beam_size)


def check_prompt(initial_prompt: str, hotwords: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """Bounds the decoder prompt; blank hotwords are dropped."""
    if len(initial_prompt) > MAX_PROMPT_CHARS:
        raise InvalidArgument(
            f"config.initial_prompt is {len(initial_prompt)} characters; at most "
            f"{MAX_PROMPT_CHARS} are accepted"
        )
    if len(hotwords) > MAX_HOTWORDS:
        raise InvalidArgument(
            f"config.hotwords has {len(hotwords)} entries; at most {MAX_HOTWORDS} are accepted"
        )
    for index, word in enumerate(hotwords):
        if len(word) > MAX_HOTWORD_CHARS:
            raise InvalidArgument(
                f"config.hotwords[{index}] is {len(word)} characters; at most "
                f"{MAX_HOTWORD_CHARS} are accepted"
            )
    cleaned = tuple(w.strip() for w in hotwords if w.strip())
    return initial_prompt.strip(), cleaned
