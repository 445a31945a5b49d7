"""The requests a benchmark sends: recorded speech of mixed lengths and interview texts.

Speech comes from Debian's pocketsphinx-testdata, real recordings only (never synthesized):
five LibriVox clips of 3-7 s with reference transcripts, goforward.raw, five spoken card
commands of 1-3.5 s (cards/, with cards.transcription), a TIDIGITS digit string whose file
name spells its digits, and two more short clips without a reference (numbers.raw, a digit
string, and something.raw). The STT workloads built from them:

* ``mixed_clips`` (scenario ``stt``): the LibriVox mix; longer clips (up to just under
  Whisper's 30 s window) join the recordings with short pauses, 3-30 s as real traffic.
* ``short_clips`` (``stt-short``): every distinct recording of 1-10 s, nothing repeated.
* ``same_command`` (``stt-same``): one 3.5 s command, sent by every client at once.
* ``recurring_commands`` (``stt-repeat``): short commands where the same few clips recur.
* ``conversation_clips`` (``stt-long``): about 30 s conversations that alternate speakers
  (the LibriVox reader and the card, digit and command speakers) with short pauses; one is
  exactly 30.0 s long and ends on speech.

Every joined clip keeps an exact reference (the parts' references in order) for WER; clips
without one count for isolation but not for WER.
"""

from __future__ import annotations

import io
import os
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from speech.v1 import common_pb2, stt_pb2, tts_pb2
from tools.bench.texts import INTERVIEW_TEXTS, KOKORO_TEXTS

SAMPLE_RATE = 16_000
_ROOT = Path(__file__).resolve().parents[2]
_CANDIDATES = (
    Path("/usr/share/pocketsphinx/test/data"),
    _ROOT / ".venv" / "share" / "testdata" / "pocketsphinx",
)
#: Target lengths (s) of the joined clips (each ends within 1.5 s above its target, never
#: past _MAX_CLIP_S, so the longest stays inside one 30 s Whisper window).
JOINED_TARGETS_S = (10.0, 14.0, 18.0, 22.0, 26.0, 28.0)
_GAP_S = 0.25
_MAX_CLIP_S = 29.5


@dataclass(frozen=True)
class Clip:
    name: str
    #: 16 kHz mono int16 samples.
    pcm: np.ndarray
    reference: str

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / SAMPLE_RATE

    def wav_bytes(self) -> bytes:
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(SAMPLE_RATE)
            wav.writeframes(self.pcm.astype("<i2").tobytes())
        return buffer.getvalue()


@dataclass(frozen=True)
class Request:
    """One prepared call: the serialized request and what it carries."""

    payload: bytes
    #: Seconds of input audio (STT); 0 for synthesis.
    audio_s: float
    #: Reference transcript for WER (STT only).
    reference: str | None = None
    label: str = ""


def testdata_dir() -> Path:
    """Where the recordings are: SPEECH_BENCH_TESTDATA, the system package or .venv/share.

    Falls back to the project's fetch script (which downloads the Debian package once).
    """
    override = os.environ.get("SPEECH_BENCH_TESTDATA")
    candidates = (Path(override),) if override else _CANDIDATES
    for candidate in candidates:
        if (candidate / "librivox" / "transcription").exists():
            return candidate
    from tools.fetch.testdata import testdata_dir as fetch_testdata_dir

    return fetch_testdata_dir()


@lru_cache(maxsize=1)
def recorded_clips() -> tuple[Clip, ...]:
    """The six recordings as they are: five LibriVox sentences and "go forward ten meters"."""
    root = testdata_dir()
    references: dict[str, str] = {}
    for line in (root / "librivox" / "transcription").read_text().splitlines():
        if "(" not in line:
            continue
        text, _, rest = line.rpartition("(")
        words = [w for w in text.split() if w not in ("<s>", "</s>")]
        references[rest.rstrip(")").strip()] = " ".join(words)
    clips = []
    for name in sorted(references):
        with wave.open(str(root / "librivox" / f"{name}.wav"), "rb") as wav:
            if wav.getframerate() != SAMPLE_RATE or wav.getnchannels() != 1:
                raise ValueError(f"{name}: expected 16 kHz mono")
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        clips.append(Clip(name, pcm, references[name]))
    raw = np.frombuffer((root / "goforward.raw").read_bytes(), dtype="<i2")
    clips.append(Clip("goforward", raw, "go forward ten meters"))
    return tuple(clips)


def _join(parts: list[Clip], name: str, gap_s: float = _GAP_S) -> Clip:
    gap = np.zeros(round(gap_s * SAMPLE_RATE), dtype=np.int16)
    pieces: list[np.ndarray] = []
    for part in parts:
        if pieces:
            pieces.append(gap)
        pieces.append(part.pcm)
    reference = " ".join(p.reference for p in parts if p.reference)
    return Clip(name, np.concatenate(pieces), reference)


@lru_cache(maxsize=1)
def mixed_clips() -> tuple[Clip, ...]:
    """Recordings plus joined clips, interleaved short/long: lengths from 2.8 s to 29.5 s."""
    recorded = recorded_clips()
    joined: list[Clip] = []
    cursor = 0
    for target in JOINED_TARGETS_S:
        parts: list[Clip] = []
        length = 0.0
        while True:
            candidate = recorded[cursor % len(recorded)]
            extra = candidate.duration_s + (_GAP_S if parts else 0.0)
            if parts and length + extra > min(target + 1.5, _MAX_CLIP_S):
                break
            parts.append(candidate)
            length += extra
            cursor += 1
        joined.append(_join(parts, f"joined-{target:g}s"))
    mixed: list[Clip] = []
    for short, long in zip(recorded, joined, strict=False):
        mixed += [short, long]
    return tuple(mixed)


# -- short commands, repeats and conversations (real recordings only) ------------------------

#: TIDIGITS names a recording by its digits ("z" is zero, "o" is oh).
_TIDIGITS_WORDS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
    "7": "seven", "8": "eight", "9": "nine", "z": "zero", "o": "oh",
}
#: Short clips are 1-10 s (the issue's "short clips"); commands 1-5 s.
SHORT_MAX_S = 10.0
COMMAND_MIN_S, COMMAND_MAX_S = 1.0, 5.0
#: The clip every client sends at once in ``stt-same``: "eight of spades four of clubs seven
#: of hearts", 3.5 s.
SAME_COMMAND = "cards-005"
#: ``stt-repeat``: a few commands recur (005 five times, goforward three, 001 twice) among
#: others, in this order; the clients start at different points of it.
RECURRING_PATTERN = (
    "cards-005", "goforward", "cards-001", "cards-005", "tidigits-2934z", "goforward",
    "cards-005", "numbers", "cards-001", "cards-005", "goforward", "cards-004", "cards-005",
    "cards-002",
)
#: The conversations of ``stt-long``: (name, parts in order, total length or None, pause).
#: With a total, the pauses are sized so the clip lasts exactly that long and ends on speech.
CONVERSATIONS: tuple[tuple[str, tuple[str, ...], float | None, float], ...] = (
    ("conversation-28s", ("librivox-0880", "cards-002", "librivox-0930", "cards-001",
                          "librivox-0870", "cards-003", "librivox-0920", "cards-004"), None, 0.4),
    ("conversation-29s", ("librivox-0890", "goforward", "librivox-0930", "cards-005",
                          "librivox-0880", "tidigits-2934z", "librivox-0870"), None, 0.35),
    ("conversation-30.0s", ("librivox-0870", "cards-005", "librivox-0920", "goforward",
                            "librivox-0890", "tidigits-2934z"), 30.0, 0.0),
)


def _raw_clip(path: Path, name: str, reference: str) -> Clip:
    return Clip(name, np.frombuffer(path.read_bytes(), dtype="<i2"), reference)


def _wav_clip(path: Path, name: str, reference: str) -> Clip:
    with wave.open(str(path), "rb") as wav:
        if wav.getframerate() != SAMPLE_RATE or wav.getnchannels() != 1:
            raise ValueError(f"{path}: expected 16 kHz mono")
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return Clip(name, pcm, reference)


def _transcription(path: Path) -> dict[str, str]:
    """Sphinx transcription lines: ``<s> words </s> (file id)``."""
    references: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "(" not in line:
            continue
        text, _, rest = line.rpartition("(")
        words = [w for w in text.split() if w not in ("<s>", "</s>")]
        references[rest.rstrip(")").strip()] = " ".join(words)
    return references


def tidigits_reference(stem: str) -> str:
    """"dhd.2934z" -> "two nine three four zero" (the digits of a TIDIGITS file name)."""
    digits = stem.rsplit(".", 1)[-1]
    return " ".join(_TIDIGITS_WORDS[d] for d in digits if d in _TIDIGITS_WORDS)


@lru_cache(maxsize=1)
def all_recordings() -> dict[str, Clip]:
    """Every recording of the test data by a short name: librivox-0870 .. 0930, goforward,
    cards-001 .. 005, tidigits-2934z, numbers and something (no reference)."""
    root = testdata_dir()
    clips: dict[str, Clip] = {}
    for clip in recorded_clips():
        short = "goforward" if clip.name == "goforward" else "librivox-" + clip.name[-4:]
        clips[short] = Clip(short, clip.pcm, clip.reference)
    cards = _transcription(root / "cards" / "cards.transcription")
    for file_id, reference in sorted(cards.items()):
        clips[f"cards-{file_id}"] = _wav_clip(
            root / "cards" / f"{file_id}.wav", f"cards-{file_id}", reference
        )
    digits = root / "tidigits" / "dhd.2934z.raw"
    clips["tidigits-2934z"] = _raw_clip(digits, "tidigits-2934z", tidigits_reference(digits.stem))
    # No reference ships with these two: they count for isolation, not for WER.
    clips["numbers"] = _raw_clip(root / "numbers.raw", "numbers", "")
    clips["something"] = _raw_clip(root / "something.raw", "something", "")
    return clips


def command_clips() -> tuple[Clip, ...]:
    """The recordings of 1-5 s: spoken commands, digit strings, short sentences."""
    return tuple(
        c for c in all_recordings().values() if COMMAND_MIN_S <= c.duration_s <= COMMAND_MAX_S
    )


def short_clips() -> tuple[Clip, ...]:
    """Every distinct recording of 1-10 s, shortest first (no content twice)."""
    clips = [c for c in all_recordings().values() if COMMAND_MIN_S <= c.duration_s <= SHORT_MAX_S]
    return tuple(sorted(clips, key=lambda c: (c.duration_s, c.name)))


def same_command() -> Clip:
    return all_recordings()[SAME_COMMAND]


def recurring_commands() -> tuple[Clip, ...]:
    recordings = all_recordings()
    return tuple(recordings[name] for name in RECURRING_PATTERN)


def conversation(name: str, parts: Sequence[Clip], total_s: float | None, gap_s: float) -> Clip:
    """``parts`` in order with pauses of ``gap_s``; with ``total_s``, the pauses are sized
    so the clip is exactly ``total_s`` long (to the sample) and ends on the last part."""
    if total_s is None:
        return _join(list(parts), name, gap_s)
    total = round(total_s * SAMPLE_RATE)
    silence = total - sum(len(p.pcm) for p in parts)
    gaps = len(parts) - 1
    if gaps < 1 or silence < gaps * int(0.15 * SAMPLE_RATE):
        raise ValueError(f"{name}: the parts do not fit in {total_s} s with pauses")
    pieces: list[np.ndarray] = []
    for index, part in enumerate(parts):
        if index:
            # Spread the silence evenly; the first pauses take the remainder's samples.
            length = silence // gaps + (1 if index - 1 < silence % gaps else 0)
            pieces.append(np.zeros(length, dtype=np.int16))
        pieces.append(part.pcm)
    pcm = np.concatenate(pieces)
    assert len(pcm) == total
    return Clip(name, pcm, " ".join(p.reference for p in parts if p.reference))


@lru_cache(maxsize=1)
def conversation_clips() -> tuple[Clip, ...]:
    recordings = all_recordings()
    return tuple(
        conversation(name, [recordings[p] for p in parts], total, gap)
        for name, parts, total, gap in CONVERSATIONS
    )


#: Scenario -> the clips it sends (each client walks the list from its own offset).
STT_WORKLOADS: dict[str, Callable[[], tuple[Clip, ...]]] = {
    "stt": mixed_clips,
    "stt-short": short_clips,
    "stt-same": lambda: (same_command(),),
    "stt-repeat": recurring_commands,
    "stt-long": conversation_clips,
}


def workload_clips(scenario: str) -> tuple[Clip, ...]:
    return STT_WORKLOADS[scenario]()


def five_second_clip() -> Clip:
    """Exactly 5 s of speech (the cache-hit scenario's request; cut mid-sentence, so it has
    no reference transcript and no WER)."""
    first = recorded_clips()[0]
    if first.duration_s < 5.0:
        raise ValueError("expected a recording of at least 5 s")
    return Clip("five-seconds", first.pcm[: 5 * SAMPLE_RATE], "")


# -- requests --------------------------------------------------------------------------------


def transcribe_request(clip: Clip, *, skip_cache: bool = True) -> Request:
    request = stt_pb2.TranscribeRequest(
        config=stt_pb2.RecognitionConfig(language_code="en", skip_cache=skip_cache),
        audio=clip.wav_bytes(),
    )
    return Request(
        request.SerializeToString(), clip.duration_s, clip.reference or None, clip.name
    )


def stt_requests(*, skip_cache: bool = True, scenario: str = "stt") -> list[Request]:
    """The requests of an STT workload; identical clips give identical (shared) requests."""
    built: dict[str, Request] = {}
    return [
        built.setdefault(c.name, transcribe_request(c, skip_cache=skip_cache))
        for c in workload_clips(scenario)
    ]


def null_requests() -> list[Request]:
    """Tiny requests (0.1 s of raw audio) so the null engine measures the serving path only."""
    pcm = recorded_clips()[-1].pcm[: SAMPLE_RATE // 10]
    request = stt_pb2.TranscribeRequest(
        config=stt_pb2.RecognitionConfig(
            encoding=common_pb2.AUDIO_ENCODING_LINEAR16,
            sample_rate_hertz=SAMPLE_RATE,
            language_code="en",
            skip_cache=True,
        ),
        audio=pcm.astype("<i2").tobytes(),
    )
    return [Request(request.SerializeToString(), len(pcm) / SAMPLE_RATE, None, "null")]


def synthesize_request(text: str, tier: int, *, skip_cache: bool = True) -> Request:
    request = tts_pb2.SynthesizeRequest(
        text=text,
        tier=tier,  # type: ignore[arg-type]
        disable_fallback=True,
        skip_cache=skip_cache,
        audio_config=tts_pb2.AudioConfig(encoding=common_pb2.AUDIO_ENCODING_WAV),
    )
    return Request(request.SerializeToString(), 0.0, None, text[:32])


def tts_texts(engine: str) -> tuple[str, ...]:
    return KOKORO_TEXTS if engine == "kokoro" else INTERVIEW_TEXTS


def tts_requests(engine: str, *, skip_cache: bool = True) -> list[Request]:
    tier = tts_pb2.VOICE_TIER_HIGH if engine == "kokoro" else tts_pb2.VOICE_TIER_STANDARD
    return [synthesize_request(t, tier, skip_cache=skip_cache) for t in tts_texts(engine)]
