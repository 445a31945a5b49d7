"""One live stream: audio in, utterances found by the VAD, decodes through the batcher,
results out in order.

Timeline: every position is an absolute 16 kHz sample index from the stream's start, so
results carry times relative to the stream start whatever the client's rate.

Per chunk: the bytes become samples and the new samples get VAD scores (in a worker
thread, only the new audio), then the endpointer turns the scores into utterance starts
and ends. An utterance's audio runs from a short pre-roll before the VAD's speech start
(the VAD reacts a little late) to a short tail after its end of speech.

Decodes (every one an item of the model's shared batcher, so streams pack together):

* final: at each end of utterance, with the request's options and the stream's priority;
  decoded ahead, while the batcher is idle, once a pause has lasted the tail (sent only
  if the pause becomes the endpoint);
* interim: when ``interim_interval_ms`` of new audio with new speech has come since the
  last interim, the utterance so far, greedily, one priority level lower, admitted by the
  model's interim gate (gate.py: interims use only the instances that stream finals
  leave). A stream has at most one interim in the batcher. When the next one is due and
  the previous one still waits in the queue, that one is abandoned (withdrawn, never
  computed: see claim.py) and the newer one takes its place; when it is already
  computing, the next one is submitted as soon as it finishes.

Results leave in order: finals in utterance order, and an interim of a later utterance
waits until every earlier final has gone. An interim that arrives after its utterance
ended is dropped (its final follows).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from batcher import Batcher
from speech.v1 import stt_pb2
from speech_platform.metrics import ENGINE_AUDIO_SECONDS
from stt_service.streaming.buffer import AudioBuffer
from stt_service.streaming.claim import DecodeClaim
from stt_service.streaming.config import StreamPlan
from stt_service.streaming.endpointing import (
    Endpointer,
    EndReason,
    UtteranceEnded,
    UtteranceStarted,
)
from stt_service.streaming.gate import gate_for
from stt_service.streaming.pcm import PcmChunkDecoder
from stt_service.streaming.results import (
    DecodedSpan,
    build_result,
    comparable_words,
    stability,
    transcript_text,
)
from stt_service.streaming.vad import FRAME_SAMPLES, SAMPLE_RATE, StreamingVad
from stt_service.transcriber import ResolvedOptions
from stt_service.whisper_engine import (
    MEL_FRAMES_PER_SECOND,
    WINDOW_SAMPLES,
    WindowItem,
    WindowResult,
)

log = logging.getLogger(__name__)

#: Audio kept before the VAD's first speech frame (it fires a little after onset).
PREROLL_S = 0.3
#: Audio after the end of speech given to the decoder (capped by the endpoint silence).
TAIL_S = 0.3
#: Utterances with less speech than this are VAD blips (a cough, a click): not decoded,
#: unless an interim was already shown for them.
MIN_SPEECH_S = 0.25

_executor: ThreadPoolExecutor | None = None


def audio_executor() -> Executor:
    """Threads for chunk decoding and VAD, shared by every stream (onnxruntime and numpy
    release the GIL, so this keeps the event loop free)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stt-stream")
    return _executor


@dataclass(frozen=True)
class Outgoing:
    """A result to send, and the moment its latency is measured from."""

    response: stt_pb2.StreamingTranscribeResponse
    #: loop.time() at the end of the audio an interim covers, or when an endpoint was seen.
    since: float


@dataclass(eq=False)
class _Utterance:
    speech_start: int
    audio_start: int
    #: End of the audio the latest interim covers (speech start until one is submitted).
    covered: int
    ended: bool = False
    interims_sent: int = 0
    last_words: list[str] = field(default_factory=list)
    #: utterance_index, given when its first result is sent (blips never get one).
    index: int | None = None


@dataclass(eq=False)
class _Decode:
    utterance: _Utterance
    task: asyncio.Task[WindowResult]
    span: DecodedSpan
    since: float
    claim: DecodeClaim | None = None
    #: An admitted interim holds a place in its model's gate until it is done.
    holds_slot: bool = False
    #: One past the last sample decoded.
    audio_end: int = 0


class StreamSession:
    """The state of one stream. Not thread-safe: one task feeds it, in order."""

    def __init__(
        self,
        plan: StreamPlan,
        emit: Callable[[Outgoing], None],
        fail: Callable[[BaseException], None],
        *,
        executor: Executor | None = None,
    ) -> None:
        self.plan = plan
        self._emit_out = emit
        self._fail = fail
        self._executor = executor or audio_executor()
        self._loop = asyncio.get_running_loop()
        self._pcm = PcmChunkDecoder(plan.encoding, plan.sample_rate, plan.channels)
        self._vad = StreamingVad()
        self._preroll = int(PREROLL_S * SAMPLE_RATE)
        self._tail = min(int(TAIL_S * SAMPLE_RATE), plan.endpoint_silence_ms * SAMPLE_RATE // 1000)
        self._endpointer = Endpointer.for_settings(
            plan.endpoint_silence_ms,
            max_utterance_s=(WINDOW_SAMPLES - self._preroll - self._tail) / SAMPLE_RATE,
        )
        self._interval = plan.interim_interval_ms * SAMPLE_RATE // 1000
        self._buffer = AudioBuffer()
        self._current: _Utterance | None = None
        #: End of the audio the last final took; the next pre-roll does not reach back past it.
        self._taken = 0
        self._last_audio_at = self._loop.time()
        self._interim: _Decode | None = None
        self._gate = gate_for(plan.interim.model.batcher, plan.decode_capacity)
        self._gate_waiting = False
        self._finals: deque[_Decode] = deque()
        #: A final decoded ahead of its endpoint, and the pause (start frame) it assumed.
        self._speculative: _Decode | None = None
        self._speculative_pause: int | None = None
        self._speculate = self._tail < plan.endpoint_silence_ms * SAMPLE_RATE // 1000
        self._held: tuple[_Decode, WindowResult] | None = None
        self._next_index = 0
        self._next_segment_id = 0
        self._closed = False
        #: Counts for tests and logs.
        self.interims_submitted = 0
        self.interims_superseded = 0
        self.finals_submitted = 0
        self.finals_ahead = 0

    # ------------------------------------------------------------------ input

    async def feed(self, chunk: bytes, received_at: float) -> None:
        """Takes the next audio chunk (any size); ``received_at`` is loop.time()."""
        samples, scores = await self._loop.run_in_executor(self._executor, self._analyse, chunk)
        self._consume(samples, scores, received_at)

    async def finish(self, now: float) -> None:
        """The audio is over: decodes what is left and returns once every final is out."""
        samples, scores = await self._loop.run_in_executor(self._executor, self._analyse_rest)
        self._consume(samples, scores, now)
        for event in self._endpointer.finish():
            self._end_utterance(event, now)
        self._drop_interim()
        finals = [job.task for job in self._finals]
        if finals:
            await asyncio.gather(*finals, return_exceptions=True)
        self._drain()

    def close(self) -> None:
        """Frees everything at once: queued decodes are withdrawn from the batcher."""
        self._closed = True
        self._drop_speculation()
        self._drop_interim()
        if self._interim is not None:
            self._interim.task.cancel()  # computing: only its result is dropped
        for job in self._finals:
            job.task.cancel()
        self._finals.clear()
        self._held = None

    def _analyse(self, chunk: bytes) -> tuple[np.ndarray, np.ndarray]:
        samples = self._pcm.feed(chunk)
        return samples, self._vad.score(samples)

    def _analyse_rest(self) -> tuple[np.ndarray, np.ndarray]:
        samples = self._pcm.flush()
        return samples, self._vad.score(samples)

    def _consume(self, samples: np.ndarray, scores: np.ndarray, now: float) -> None:
        if self._closed:
            return
        self._buffer.append(samples)
        if len(samples):
            self._last_audio_at = now
        for event in self._endpointer.push(scores):
            if isinstance(event, UtteranceStarted):
                self._start_utterance(event.frame)
            else:
                self._end_utterance(event, now)
        if self._current is not None:
            self._buffer.trim(self._current.audio_start)
        else:
            self._buffer.trim(max(self._buffer.end - self._preroll, self._taken))
        self._maybe_speculate()
        self._maybe_interim()

    # ------------------------------------------------------------------ utterances

    def _start_utterance(self, frame: int) -> None:
        speech_start = frame * FRAME_SAMPLES
        audio_start = max(speech_start - self._preroll, self._taken, self._buffer.start)
        self._current = _Utterance(speech_start, audio_start, covered=speech_start)

    def _end_utterance(self, event: UtteranceEnded, now: float) -> None:
        utterance = self._current
        self._current = None
        if utterance is None:
            return
        utterance.ended = True
        self._drop_interim()
        speech_end = event.end_frame * FRAME_SAMPLES
        if event.reason is EndReason.WINDOW_LIMIT:
            audio_end = speech_end  # the next utterance starts right here
        else:
            audio_end = min(speech_end + self._tail, self._buffer.end)
        audio_end = min(audio_end, utterance.audio_start + WINDOW_SAMPLES)
        ahead = self._take_speculation(utterance, event, audio_end)
        blip = event.speech_frames * FRAME_SAMPLES < MIN_SPEECH_S * SAMPLE_RATE
        if blip and utterance.interims_sent == 0:
            log.debug("dropped a VAD blip", extra={"speech_frames": event.speech_frames})
            if ahead is not None:
                self._withdraw(ahead)
            return
        self._taken = audio_end
        if ahead is not None:
            task, span = ahead.task, ahead.span
            self.finals_ahead += 1
        else:
            span = self._span(utterance, audio_end, speech_end)
            samples = self._buffer.slice(utterance.audio_start, audio_end)
            task = self._submit_final(samples, None)
        self._finals.append(_Decode(utterance, task, span, since=now))
        self.finals_submitted += 1
        ENGINE_AUDIO_SECONDS.labels(self.plan.final.model.label).inc(span.duration_s)
        task.add_done_callback(lambda _task: self._drain())

    def _span(self, utterance: _Utterance, audio_end: int, speech_end: int) -> DecodedSpan:
        return DecodedSpan(
            offset_s=utterance.audio_start / SAMPLE_RATE,
            duration_s=(audio_end - utterance.audio_start) / SAMPLE_RATE,
            speech_start_s=utterance.speech_start / SAMPLE_RATE,
            speech_end_s=min(speech_end, audio_end) / SAMPLE_RATE,
        )

    # ------------------------------------------------------------------ finals ahead

    def _maybe_speculate(self) -> None:
        """Decodes the final ahead of its endpoint while an instance is idle.

        Once a pause has lasted the tail (0.3 s), the audio a final would take if the pause
        becomes the endpoint is all here; decoding it then, rather than when the endpoint
        silence (0.6 s) is complete, takes up to that difference off the final's latency.
        The result is sent only at the endpoint; if speech resumes first, the decode is
        withdrawn (or its result dropped). Only spare capacity is used: unless an instance
        is idle with nothing waiting, the final waits for its endpoint like any other.
        """
        pause = self._endpointer.pause_start if self._current is not None else None
        if self._speculative is not None and self._speculative_pause != pause:
            self._drop_speculation()
        utterance = self._current
        if (
            not self._speculate
            or self._closed
            or utterance is None
            or pause is None
            or self._speculative is not None
            or self._buffer.end < pause * FRAME_SAMPLES + self._tail
            or not _has_idle_instance(self.plan.final.model.batcher)
        ):
            return
        speech_end = pause * FRAME_SAMPLES
        audio_end = min(speech_end + self._tail, utterance.audio_start + WINDOW_SAMPLES)
        samples = self._buffer.slice(utterance.audio_start, audio_end)
        claim = DecodeClaim()
        task = self._submit_final(samples, claim)
        task.add_done_callback(_retrieve)  # it may be dropped unread
        span = self._span(utterance, audio_end, speech_end)
        self._speculative = _Decode(
            utterance, task, span, since=0.0, claim=claim, audio_end=audio_end
        )
        self._speculative_pause = pause

    def _take_speculation(
        self, utterance: _Utterance, event: UtteranceEnded, audio_end: int
    ) -> _Decode | None:
        """The decode made ahead for this very endpoint, if there is one."""
        job = self._speculative
        if job is None:
            return None
        self._speculative = None
        same = (
            job.utterance is utterance
            and event.reason is not EndReason.WINDOW_LIMIT
            and self._speculative_pause == event.end_frame
            and job.audio_end == audio_end
        )
        self._speculative_pause = None
        if same:
            return job
        self._withdraw(job)
        return None

    def _drop_speculation(self) -> None:
        job = self._speculative
        self._speculative = None
        self._speculative_pause = None
        if job is not None:
            self._withdraw(job)

    @staticmethod
    def _withdraw(job: _Decode) -> None:
        """Withdrawn if it still waits; if it computes, its result is dropped."""
        if job.claim is not None:
            job.claim.abandon()
        job.task.cancel()

    # ------------------------------------------------------------------ decoding

    def _submit(
        self,
        samples: np.ndarray,
        options: ResolvedOptions,
        priority: int,
        claim: DecodeClaim | None,
    ) -> asyncio.Task[WindowResult]:
        item = window_item(samples, options, claim)
        return self._loop.create_task(
            options.model.batcher.submit(
                item,
                cost=options.model.frames_for(len(samples)) / MEL_FRAMES_PER_SECOND,
                priority=priority,
            )
        )

    def _interim_due(self) -> bool:
        """Due after interim_interval_ms of new audio that holds some new speech (a pause
        alone would only decode the same words again)."""
        utterance = self._current
        return (
            self.plan.interim_results
            and not self._closed
            and utterance is not None
            and self._buffer.end - utterance.covered >= self._interval
            and self._endpointer.last_speech_end * FRAME_SAMPLES > utterance.covered
        )

    def _submit_final(
        self, samples: np.ndarray, claim: DecodeClaim | None
    ) -> asyncio.Task[WindowResult]:
        """A final (or one decoded ahead); the interim gate counts it while it is under way."""
        task = self._submit(samples, self.plan.final, self.plan.final_priority, claim)
        self._gate.final_started()
        task.add_done_callback(lambda _task: self._gate.final_finished())
        return task

    def _maybe_interim(self) -> None:
        if not self._interim_due():
            return
        job = self._interim
        if job is not None:
            if job.claim is not None and job.claim.abandon():
                # Still waiting in the batcher: withdraw it (never computed) and let the
                # newer audio take its place, and its place in the gate.
                job.holds_slot = False
                job.task.cancel()
                self.interims_superseded += 1
                self._start_interim()
            return  # computing: the next one is submitted when it finishes
        if not self._gate_waiting:
            self._gate_waiting = True
            self._gate.request(self, self._admitted)

    def _admitted(self) -> None:
        """The gate let this stream in (maybe much later): decode the newest audio."""
        self._gate_waiting = False
        if self._interim is not None or not self._interim_due():
            self._gate.release()
            return
        self._start_interim()

    def _start_interim(self) -> None:
        utterance = self._current
        assert utterance is not None
        audio_end = min(self._buffer.end, utterance.audio_start + WINDOW_SAMPLES)
        samples = self._buffer.slice(utterance.audio_start, audio_end)
        span = DecodedSpan(
            offset_s=utterance.audio_start / SAMPLE_RATE,
            duration_s=len(samples) / SAMPLE_RATE,
            speech_start_s=utterance.speech_start / SAMPLE_RATE,
            speech_end_s=audio_end / SAMPLE_RATE,
        )
        utterance.covered = self._buffer.end
        claim = DecodeClaim()
        task = self._submit(samples, self.plan.interim, self.plan.interim_priority, claim)
        job = _Decode(utterance, task, span, since=self._last_audio_at, claim=claim)
        job.holds_slot = True
        self._interim = job
        self.interims_submitted += 1
        task.add_done_callback(functools.partial(self._interim_done, job))

    def _drop_interim(self) -> None:
        """The utterance ended: a queued interim is withdrawn, a running one is ignored."""
        if self._gate_waiting:
            self._gate.withdraw(self)
            self._gate_waiting = False
        job = self._interim
        if job is not None and (job.claim is None or job.claim.abandon()):
            job.task.cancel()
            self._interim = None
        # One that is computing stays the stream's interim until it is done (its result is
        # then ignored), so that the next utterance's first interim does not run beside it.

    def _interim_done(self, job: _Decode, task: asyncio.Task[WindowResult]) -> None:
        if job.holds_slot:
            job.holds_slot = False
            self._gate.release()
        if self._interim is job:
            self._interim = None
        if self._closed or task.cancelled():
            return
        error = task.exception()
        if error is not None:
            # Interims are best effort; a failure that matters fails the final too.
            log.debug("interim decode failed", extra={"error": repr(error)})
        elif job.utterance is self._current and not job.utterance.ended:
            if self._finals:
                self._held = (job, task.result())
            else:
                self._send_interim(job, task.result())
        self._maybe_interim()

    # ------------------------------------------------------------------ results

    def _index_of(self, utterance: _Utterance) -> int:
        if utterance.index is None:
            utterance.index = self._next_index
            self._next_index += 1
        return utterance.index

    def _send_interim(self, job: _Decode, result: WindowResult) -> None:
        text = transcript_text(result)
        if not text:
            return
        utterance = job.utterance
        words = comparable_words(text)
        agreement = stability(utterance.last_words, words)
        utterance.last_words = words
        response = build_result(
            result,
            job.span,
            is_final=False,
            utterance_index=self._index_of(utterance),
            model=self.plan.model,
            first_segment_id=self._next_segment_id,
            stability_value=agreement,
        )
        utterance.interims_sent += 1
        self._emit_out(Outgoing(response, job.since))

    def _drain(self) -> None:
        """Sends the finals that are done, in utterance order, then a held interim."""
        if self._closed:
            return
        while self._finals and self._finals[0].task.done():
            job = self._finals.popleft()
            if job.task.cancelled():
                continue
            error = job.task.exception()
            if error is not None:
                self._closed = True
                self._fail(error)
                return
            result = job.task.result()
            if not transcript_text(result) and job.utterance.interims_sent == 0:
                continue  # nothing was said and nothing was shown: no utterance
            response = build_result(
                result,
                job.span,
                is_final=True,
                utterance_index=self._index_of(job.utterance),
                model=self.plan.model,
                first_segment_id=self._next_segment_id,
            )
            self._next_segment_id += len(response.segments)
            self._emit_out(Outgoing(response, job.since))
        if not self._finals and self._held is not None:
            job, result = self._held
            self._held = None
            if job.utterance is self._current and not job.utterance.ended:
                self._send_interim(job, result)


def window_item(
    samples: np.ndarray, options: ResolvedOptions, claim: DecodeClaim | None
) -> WindowItem:
    """The batch item; the engine asks ``claim.begin`` before decoding it (see claim.py)."""
    return WindowItem(
        samples, options.decode, should_decode=claim.begin if claim is not None else None
    )


def _retrieve(task: asyncio.Task[WindowResult]) -> None:
    """Marks a dropped decode's outcome as seen, so asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()


def _has_idle_instance(batcher: Batcher[WindowItem, WindowResult]) -> bool:
    return batcher.pending == 0 and batcher.running < batcher.instance_count
