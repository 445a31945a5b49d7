"""StreamingSynthesizeText end to end: text sent as an LLM sends it, audio back as it goes.

The real server (Piper, Kokoro and Whisper) on loopback. The client paces its pieces by a
seeded schedule of 1-4 words every 30-80 ms (the benchmark's, tools.measure.tts_voice_agent): the
pacing is the workload (an LLM's output rate), not synchronisation; every assertion is on
what the server returned.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
from dataclasses import dataclass, field

import grpc
import jiwer
import numpy as np
import pytest

from speech.v1 import common_pb2, stt_pb2, tts_pb2, tts_pb2_grpc
from tools.measure.tts_voice_agent import llm_pieces
from tts_service.streaming_text import CutOptions, SentenceCutter

pytestmark = pytest.mark.slow

PIPER_VOICE = "en_US-joe-medium"
LINEAR16 = common_pb2.AUDIO_ENCODING_LINEAR16
WAV = common_pb2.AUDIO_ENCODING_WAV

#: What an AI interviewer might say: sentences of varied length, numbers and abbreviations.
ANSWER = (
    "Thanks for joining us today. I would like to start with your background. "
    "Tell me about a project from 2021 that made you proud, and what your role was. "
    "How many people were on the team? Take your time."
)


@dataclass
class StreamOutcome:
    chunks: list[tts_pb2.StreamingSynthesizeResponse] = field(default_factory=list)
    first_audio_at: float | None = None
    last_piece_sent_at: float = 0.0
    first_sentence_sent_at: float | None = None

    @property
    def audio(self) -> bytes:
        return b"".join(c.audio for c in self.chunks)


async def stream_text(
    tts: tts_pb2_grpc.TextToSpeechStub,
    config: tts_pb2.TextStreamConfig,
    pieces: list[tuple[float, str]],
    *,
    flush_after: int | None = None,
) -> StreamOutcome:
    outcome = StreamOutcome()
    call = tts.StreamingSynthesizeText(timeout=120)

    async def send() -> None:
        await call.write(tts_pb2.StreamingSynthesizeTextRequest(config=config))
        sent = ""
        for number, (delay, piece) in enumerate(pieces):
            await asyncio.sleep(delay)  # the LLM's pace: the workload
            await call.write(tts_pb2.StreamingSynthesizeTextRequest(text=piece))
            sent += piece
            outcome.last_piece_sent_at = time.perf_counter()
            if outcome.first_sentence_sent_at is None and re.search(r"[.?!]\s*$", sent):
                outcome.first_sentence_sent_at = outcome.last_piece_sent_at
            if flush_after == number:
                await call.write(
                    tts_pb2.StreamingSynthesizeTextRequest(flush=tts_pb2.TextStreamFlush())
                )
        await call.done_writing()

    sender = asyncio.create_task(send())
    async for response in call:
        if outcome.first_audio_at is None and response.chunk.audio:
            outcome.first_audio_at = time.perf_counter()
        outcome.chunks.append(response.chunk)
    await sender
    return outcome


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " ")).split())


async def transcribe(stt, audio: bytes, *, word_times: bool = False) -> stt_pb2.TranscribeResponse:
    return await stt.Transcribe(
        stt_pb2.TranscribeRequest(
            audio=audio,
            config=stt_pb2.RecognitionConfig(
                skip_cache=True, enable_word_time_offsets=word_times
            ),
        ),
        timeout=120,
    )


# ---------------------------------------------------------------------------- the stream


async def test_llm_paced_text_streams_back_audio_that_says_it(tts, stt):
    pieces = llm_pieces(ANSWER, seed=7)
    config = tts_pb2.TextStreamConfig(
        voice=PIPER_VOICE, audio_config=tts_pb2.AudioConfig(encoding=WAV, sample_rate_hertz=16000)
    )
    outcome = await stream_text(tts, config, pieces)

    assert outcome.first_audio_at is not None
    assert outcome.first_audio_at < outcome.last_piece_sent_at  # audio before the text ended
    sentences = [c for c in outcome.chunks if c.text]  # a last chunk may flush the encoder
    assert [c.sentence_index for c in sentences] == list(range(5))  # cut where the text cuts
    starts = [c.start_seconds for c in outcome.chunks]
    durations = [c.audio_duration_seconds for c in outcome.chunks]
    assert np.allclose(starts[1:], np.cumsum(durations)[:-1], atol=1e-3)
    heard = await transcribe(stt, outcome.audio)
    error_rate = jiwer.wer(words(ANSWER), words(heard.text))  # digits drop out of both
    print(f"bidi piper: WER {error_rate:.3f}: {heard.text}")
    assert error_rate <= 0.1


async def test_streamed_text_sounds_exactly_like_the_whole_text_at_once(tts):
    """Kokoro is deterministic (its graph samples no noise; Piper's does, so two unary Piper
    calls of one text differ too): the same sentences give the same samples."""
    text = "Tell me about your last role. What did you enjoy most?"
    audio = tts_pb2.AudioConfig(encoding=LINEAR16)
    outcome = await stream_text(
        tts, tts_pb2.TextStreamConfig(voice="af_heart", audio_config=audio), llm_pieces(text, 3)
    )
    whole = await tts.Synthesize(
        tts_pb2.SynthesizeRequest(text=text, voice="af_heart", audio_config=audio, skip_cache=True),
        timeout=120,
    )
    assert outcome.audio == whole.audio
    assert [c.text for c in outcome.chunks if c.text] == [
        "Tell me about your last role.", "What did you enjoy most?"
    ]


async def test_a_flush_speaks_an_unfinished_sentence(tts):
    pieces = [(0.0, "So, tell me"), (0.0, " more about that"), (0.0, " and then continue.")]
    outcome = await stream_text(
        tts, tts_pb2.TextStreamConfig(voice=PIPER_VOICE), pieces, flush_after=1
    )
    spoken = [c.text for c in outcome.chunks if c.text]
    assert spoken == ["So, tell me more about that", "and then continue."]


async def test_a_run_on_sentence_is_cut_at_a_clause_after_the_wait(tts):
    """Nothing but the wait can cut "Well, I think that is": the rest is sent only once its
    first audio has come back."""
    call = tts.StreamingSynthesizeText(timeout=60)
    config = tts_pb2.TextStreamConfig(voice=PIPER_VOICE, max_sentence_wait_ms=300)
    await call.write(tts_pb2.StreamingSynthesizeTextRequest(config=config))
    await call.write(tts_pb2.StreamingSynthesizeTextRequest(text="Well, I think that is"))
    first = await call.read()
    await call.write(tts_pb2.StreamingSynthesizeTextRequest(text=" a great answer."))
    await call.done_writing()
    rest = []
    while (response := await call.read()) is not grpc.aio.EOF:
        rest.append(response.chunk)
    assert first.chunk.text == "Well,"  # the last clause mark, not the unfinished words
    spoken = [first.chunk.text, *(c.text for c in rest if c.text)]
    assert " ".join(spoken) == "Well, I think that is a great answer."


def test_the_wait_cuts_at_the_last_clause_or_whole_word():
    cutter = SentenceCutter(CutOptions())
    assert cutter.feed("So, about your role at Acme; tell me") == []
    (clause,) = cutter.cut_waiting()
    assert clause.text == "So, about your role at Acme;"
    assert cutter.feed(" more about") == []
    (word,) = cutter.cut_waiting()
    assert word.text == " tell me more"  # "about" may still grow
    assert cutter.cut_waiting() == []  # one word left: wait for the next piece
    (rest,) = cutter.flush()
    assert (rest.text, rest.start) == (" about", len("So, about your role at Acme; tell me more"))


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([tts_pb2.StreamingSynthesizeTextRequest(text="Hi.")], "first"),
        (
            [
                tts_pb2.StreamingSynthesizeTextRequest(config=tts_pb2.TextStreamConfig()),
                tts_pb2.StreamingSynthesizeTextRequest(config=tts_pb2.TextStreamConfig()),
            ],
            "only in the first",
        ),
        (
            [
                tts_pb2.StreamingSynthesizeTextRequest(
                    config=tts_pb2.TextStreamConfig(clause_fallback_chars=5)
                )
            ],
            "clause_fallback_chars",
        ),
        (
            [
                tts_pb2.StreamingSynthesizeTextRequest(config=tts_pb2.TextStreamConfig()),
                tts_pb2.StreamingSynthesizeTextRequest(text="word " * 1100),
            ],
            "at most 5000 per stream",
        ),
    ],
)
async def test_bad_streams_are_invalid_argument(tts, messages, message):
    call = tts.StreamingSynthesizeText(iter(messages), timeout=30)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


# ---------------------------------------------------------------------------- word timings

TIMED_TEXT = (
    "Our meeting starts at 9:30 tomorrow morning. Please bring the signed contract, "
    "your laptop and about $20 for lunch."
)


def matched_start_errors(timings, heard_words) -> list[float]:
    """|TTS start - STT start| for the words both say, matched in order by spelling."""
    ours = [(words(t.word), t.start_seconds) for t in timings]
    ours = [(w, s) for w, s in ours if w and " " not in w]
    theirs = [(words(w.word), w.start_seconds) for w in heard_words]
    matcher = difflib.SequenceMatcher(a=[w for w, _ in ours], b=[w for w, _ in theirs])
    errors = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            errors.append(abs(ours[block.a + k][1] - theirs[block.b + k][1]))
    return errors


@pytest.mark.parametrize("voice", [PIPER_VOICE, "am_adam"])
async def test_word_timings_agree_with_our_own_recogniser(tts, stt, voice):
    spoken = await tts.Synthesize(
        tts_pb2.SynthesizeRequest(
            text=TIMED_TEXT,
            voice=voice,
            audio_config=tts_pb2.AudioConfig(encoding=WAV, sample_rate_hertz=16000),
            enable_word_timings=True,
            skip_cache=True,
        ),
        timeout=120,
    )
    timings = list(spoken.word_timings)
    assert [t.word for t in timings][:6] == ["Our", "meeting", "starts", "at", "9:30", "tomorrow"]
    dollars = next(t for t in timings if t.word == "$20")  # "twenty dollars": one span
    assert TIMED_TEXT[dollars.start_char : dollars.end_char] == "$20"
    for t in timings:
        assert TIMED_TEXT[t.start_char : t.end_char] == t.word
        assert 0 <= t.start_seconds <= t.end_seconds <= spoken.audio_duration_seconds + 1e-3
    starts = [t.start_seconds for t in timings]
    assert starts == sorted(starts)
    heard = await transcribe(stt, spoken.audio, word_times=True)
    errors = matched_start_errors(timings, heard.words)
    print(f"{voice}: {len(errors)} words matched, median start error {np.median(errors):.3f} s")
    assert len(errors) >= 12
    assert np.median(errors) <= 0.08


async def test_marks_and_stream_timings_point_into_the_whole_text(tts):
    pieces = llm_pieces(TIMED_TEXT, seed=11)
    config = tts_pb2.TextStreamConfig(voice=PIPER_VOICE, enable_word_timings=True)
    outcome = await stream_text(tts, config, pieces)
    timings = [t for c in outcome.chunks for t in c.word_timings]
    for t in timings:
        assert TIMED_TEXT[t.start_char : t.end_char] == t.word
    assert [t.start_seconds for t in timings] == sorted(t.start_seconds for t in timings)
    later = [c for c in outcome.chunks if c.text][1]
    assert later.word_timings[0].start_seconds >= later.start_seconds  # stream time, not chunk

    offset = TIMED_TEXT.index("Please")
    fields = {
        "text": TIMED_TEXT,
        "voice": PIPER_VOICE,
        "marks": [tts_pb2.Mark(name="second", char_offset=offset)],
        "enable_word_timings": True,
        "skip_cache": True,
    }
    unary = await tts.Synthesize(tts_pb2.SynthesizeRequest(**fields), timeout=120)
    (mark,) = unary.mark_timings
    please = next(t for t in unary.word_timings if t.word == "Please")
    assert (mark.name, mark.char_offset) == ("second", offset)
    assert mark.time_seconds == pytest.approx(please.start_seconds)

    streamed = [
        response
        async for response in tts.StreamingSynthesize(
            tts_pb2.StreamingSynthesizeRequest(**fields), timeout=120
        )
    ]
    assert [len(c.mark_timings) for c in streamed] == [0, 1]  # on the sentence it falls in
    assert streamed[1].mark_timings[0].time_seconds == pytest.approx(
        streamed[1].word_timings[0].start_seconds
    )
    assert [t.word for c in streamed for t in c.word_timings] == [
        t.word for t in unary.word_timings
    ]


# ---------------------------------------------------------------------------- voice blends


async def test_a_blend_is_a_voice_of_its_own_and_deterministic(tts):
    async def say(voice: str) -> tts_pb2.SynthesizeResponse:
        return await tts.Synthesize(
            tts_pb2.SynthesizeRequest(
                text="Welcome to the interview.",
                voice=voice,
                audio_config=tts_pb2.AudioConfig(encoding=LINEAR16),
                skip_cache=True,
            ),
            timeout=120,
        )

    heart, adam, blend, again = [
        await say(v)
        for v in ("af_heart", "am_adam", "af_heart:0.7+am_adam:0.3", "af_heart:7+am_adam:3")
    ]
    assert blend.voice == again.voice == "af_heart:0.7+am_adam:0.3"
    assert blend.audio == again.audio  # deterministic, and weights are normalised
    assert blend.audio not in (heart.audio, adam.audio)
    assert blend.engine == "kokoro"
    voices = (await tts.ListVoices(tts_pb2.ListVoicesRequest(), timeout=10)).voices
    assert {v.engine for v in voices if v.blendable} == {"kokoro"}
    assert not next(v for v in voices if v.name == PIPER_VOICE).blendable


@pytest.mark.parametrize(
    ("voice", "message"),
    [
        ("af_heart:-0.5+am_adam:1", "positive"),
        ("af_heart:0+am_adam:1", "positive"),
        ("af_heart:nan+am_adam:1", "positive"),
        ("af_heart:lots+am_adam:1", "not a number"),
        ("af_heart:0.5+nobody:0.5", "'nobody' is not a voice"),
        (f"af_heart:0.5+{PIPER_VOICE}:0.5", "cannot be blended"),
        ("af_heart:0.5+af_heart:0.5", "twice"),
    ],
)
async def test_bad_blends_are_invalid_argument(tts, voice, message):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tts.Synthesize(tts_pb2.SynthesizeRequest(text="Hello.", voice=voice), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


# ---------------------------------------------------------------------------- SSML


async def synthesize_ssml(tts, source: str, voice: str = "af_heart") -> tts_pb2.SynthesizeResponse:
    return await tts.Synthesize(
        tts_pb2.SynthesizeRequest(
            text=source,
            ssml=True,
            voice=voice,
            enable_word_timings=True,
            audio_config=tts_pb2.AudioConfig(encoding=LINEAR16),
            skip_cache=True,
        ),
        timeout=120,
    )


async def test_ssml_breaks_prosody_marks_and_substitutions_reach_the_audio(tts, stt):
    plain = await synthesize_ssml(tts, "<speak>Good morning. Shall we begin?</speak>")
    source = (
        '<speak>Good morning.<break time="1500ms"/><prosody rate="x-slow">Shall we '
        '<mark name="begin"/>begin?</prosody> Visit <sub alias="the help desk">HD</sub>.</speak>'
    )
    shaped = await synthesize_ssml(tts, source)
    by_word = {t.word: t for t in shaped.word_timings}
    gap = by_word["Shall"].start_seconds - by_word["morning"].end_seconds
    assert gap >= 1.5  # the break is silence between the two words
    slow = by_word["begin"].end_seconds - by_word["Shall"].start_seconds
    normal = {t.word: t for t in plain.word_timings}
    assert slow > 1.5 * (normal["begin"].end_seconds - normal["Shall"].start_seconds)
    (mark,) = shaped.mark_timings
    assert mark.name == "begin"
    assert mark.time_seconds == pytest.approx(by_word["begin"].start_seconds)
    assert source[by_word["HD"].start_char : by_word["HD"].end_char] == "HD"
    wav = await tts.Synthesize(
        tts_pb2.SynthesizeRequest(text=source, ssml=True, voice="af_heart", skip_cache=True),
        timeout=120,
    )
    heard = words((await transcribe(stt, wav.audio)).text)
    assert "help desk" in heard and "shall we begin" in heard


async def test_malformed_ssml_is_invalid_argument_with_its_position(tts):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await synthesize_ssml(tts, "<speak>Hello <emphasis>there</emphasis></speak>")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "SSML at character 13: <emphasis> is not supported" in caught.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await synthesize_ssml(tts, '<speak><prosody pitch="high">Hi</prosody></speak>')
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "neither voice engine (Piper, Kokoro) can change pitch" in caught.value.details()


def test_the_cutter_stays_linear_on_hostile_pieces():
    """One character at a time, with no sentence end or space to cut at, the unspoken text is
    still cut at the clause length, so each piece costs about the same."""
    cutter = SentenceCutter(CutOptions(clause_chars=200))
    started = time.perf_counter()
    segments = [s for _ in range(4900) for s in cutter.feed("x")]
    assert time.perf_counter() - started < 10
    assert len(segments) == 24 and all(len(s.text) <= 201 for s in segments)
    many = cutter.feed(" And then. " * 8)
    assert [s.text.strip() for s in many][-1] == "And then."


async def test_a_cached_answer_keeps_its_word_timings_and_places_new_marks(tts):
    text = "Which of these two offers would you accept, and why?"
    first, second = [
        await tts.Synthesize(
            tts_pb2.SynthesizeRequest(
                text=text,
                voice=PIPER_VOICE,
                enable_word_timings=True,
                marks=[tts_pb2.Mark(name=name, char_offset=text.index("offers"))],
            ),
            timeout=120,
        )
        for name in ("first call", "second call")
    ]
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert list(second.word_timings) == list(first.word_timings)
    assert second.mark_timings[0].name == "second call"
    assert second.mark_timings[0].time_seconds == first.mark_timings[0].time_seconds
