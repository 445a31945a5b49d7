"""``SpeechToText.StreamingTranscribe``: the protocol and the limits around a StreamSession.

Two tasks serve a stream besides the response generator gRPC drives: a reader that moves
requests into a small queue (bounded, so a client that sends faster than the server
analyses is slowed by HTTP/2 flow control), and a driver that checks each request and
feeds the session. Results flow back through a queue the generator yields from.

Status codes (each ends the stream; results already decoded are sent first where the
audio itself was fine):

* INVALID_ARGUMENT: a first message without ``streaming_config``, a second config, a
  missing sample rate or a container encoding, out-of-range settings, a chunk larger than
  ``stt.max_stream_chunk_bytes`` (the request itself is malformed: nothing more is
  decoded), an empty stream.
* OUT_OF_RANGE: the audio passed ``stt.max_stream_seconds``. Audio up to the limit is
  still transcribed and its finals sent, then the stream ends with this code (the client
  should open a new stream to go on, as with Google's and Riva's limits).
* DEADLINE_EXCEEDED: no audio arrived for ``stt.stream_idle_timeout_s``. What was heard
  is finalised and sent first.
* RESOURCE_EXHAUSTED: ``stt.max_concurrent_streams`` streams are open already, or
  ``stt.max_streams_per_caller`` of this caller's; refused before anything is read.
* A client cancel ends everything at once: the session's queued decodes are withdrawn
  from the batcher (its "cancelled" rejections count them).

A client that sends audio faster than ``stt.stream_max_realtime_factor`` times real time
(after a burst of ``stt.stream_burst_seconds``) is slowed, not refused: the driver stops
reading, the bounded inbox fills and HTTP/2 flow control holds the client back, so one
stream cannot queue minutes of decodes ahead of everyone else.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc

from speech.v1 import common_pb2, stt_pb2
from speech_platform.callers import caller_of
from speech_platform.config import SttSettings
from speech_platform.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    SpeechError,
    Unavailable,
)
from speech_platform.metrics import (
    REFUSALS,
    STT_STREAM_FINAL_LATENCY,
    STT_STREAM_INTERIM_LATENCY,
    STT_STREAMS_ACTIVE,
)
from stt_service.streaming.config import StreamPlan, plan_stream
from stt_service.streaming.session import Outgoing, StreamSession
from stt_service.transcriber import Transcriber

log = logging.getLogger(__name__)

#: Requests read ahead of the driver.
_INBOX_SIZE = 32


class OutOfRange(SpeechError):
    code = grpc.StatusCode.OUT_OF_RANGE


@dataclass(frozen=True)
class _Ended:
    """The last item of the result queue: the stream is over (with this error, if any)."""

    error: BaseException | None = None


@dataclass(frozen=True)
class _RequestsOver:
    """The client half-closed (or its request stream failed with ``error``)."""

    error: BaseException | None = None


_Inbox = asyncio.Queue[stt_pb2.StreamingTranscribeRequest | _RequestsOver]
_Outbox = asyncio.Queue[Outgoing | _Ended]


class StreamSlots:
    """Counts open streams, in all and per caller, against the configured caps."""

    def __init__(self, total: int, per_caller: int) -> None:
        self.total = total
        self.per_caller = per_caller
        self.open: Counter[str] = Counter()

    @contextmanager
    def take(self, caller: str) -> Iterator[None]:
        if sum(self.open.values()) >= self.total:
            REFUSALS.labels("streams").inc()
            raise ResourceExhausted(
                f"this server serves at most {self.total} streams at once "
                "(stt.max_concurrent_streams); retry shortly or on another replica",
                retry_after_s=1.0,
            )
        if self.open[caller] >= self.per_caller:
            REFUSALS.labels("streams_per_caller").inc()
            raise ResourceExhausted(
                f"this caller has {self.open[caller]} streams open, the most one caller may "
                "(stt.max_streams_per_caller); close one first",
                retry_after_s=1.0,
            )
        self.open[caller] += 1
        try:
            yield
        finally:
            self.open[caller] -= 1
            if not self.open[caller]:
                del self.open[caller]


class StreamingRecognizer:
    """Serves StreamingTranscribe on a Transcriber (and its per-model batchers)."""

    def __init__(
        self, transcriber: Transcriber, settings: SttSettings, slots: StreamSlots | None = None
    ) -> None:
        self._transcriber = transcriber
        self._settings = settings
        self._slots = slots or StreamSlots(
            settings.max_concurrent_streams, settings.max_streams_per_caller
        )

    async def serve(
        self,
        requests: AsyncIterator[stt_pb2.StreamingTranscribeRequest],
        context: grpc.aio.ServicerContext | None = None,
        *,
        caller: str | None = None,
    ) -> AsyncIterator[stt_pb2.StreamingTranscribeResponse]:
        """The responses of one stream; raises the SpeechError that ends it, if any.

        The caller (whose stream slots are counted) is ``caller`` when a front door other
        than gRPC (speech_http's WebSocket) names it, else the gRPC context's."""
        if not self._transcriber.ready:
            raise Unavailable("speech-to-text models are still loading; retry shortly")
        if caller is None:
            caller = caller_of(context) if context is not None else "local"
        with self._slots.take(caller):
            async for response in self._serve(requests):
                yield response

    async def _serve(
        self, requests: AsyncIterator[stt_pb2.StreamingTranscribeRequest]
    ) -> AsyncIterator[stt_pb2.StreamingTranscribeResponse]:
        loop = asyncio.get_running_loop()
        stream = _Stream(self._transcriber, self._settings)
        reader = loop.create_task(_read(requests, stream.inbox))
        driver = loop.create_task(stream.drive())
        STT_STREAMS_ACTIVE.inc()
        try:
            while True:
                item = await stream.outbox.get()
                if isinstance(item, _Ended):
                    if item.error is not None:
                        raise item.error
                    return
                yield item.response
                latency = loop.time() - item.since
                if item.response.is_final:
                    STT_STREAM_FINAL_LATENCY.observe(latency)
                else:
                    STT_STREAM_INTERIM_LATENCY.observe(latency)
        finally:
            # Also on a client cancel: withdraw queued decodes now, not a loop turn later.
            stream.close()
            reader.cancel()
            driver.cancel()
            STT_STREAMS_ACTIVE.dec()


class _Stream:
    """One stream's queues, session and protocol checks."""

    def __init__(self, transcriber: Transcriber, settings: SttSettings) -> None:
        self._transcriber = transcriber
        self._settings = settings
        self._loop = asyncio.get_running_loop()
        self.inbox: _Inbox = asyncio.Queue(_INBOX_SIZE)
        self.outbox: _Outbox = asyncio.Queue()
        self.session: StreamSession | None = None
        self._idle = _IdleClock(self._loop, settings.stream_idle_timeout_s)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()

    def _fail(self, error: BaseException) -> None:
        self.outbox.put_nowait(_Ended(error))

    async def drive(self) -> None:
        """Checks and feeds every request; puts _Ended last, whatever happens."""
        try:
            first = await self._idle.next(self.inbox)
            if first is None:
                raise InvalidArgument("the stream ended before its streaming_config")
            plan = plan_stream(first, self._transcriber, self._settings)
            self.session = StreamSession(plan, self.outbox.put_nowait, self._fail)
            ending = await self._feed_all(self.session, plan)
            await self.session.finish(self._loop.time())
            self.outbox.put_nowait(_Ended(ending))
        except _IdleTimeout:
            if self.session is not None:
                await self.session.finish(self._loop.time())
            self.outbox.put_nowait(_Ended(_idle_error(self._settings.stream_idle_timeout_s)))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.outbox.put_nowait(_Ended(error))
        finally:
            self.close()

    async def _feed_all(self, session: StreamSession, plan: StreamPlan) -> SpeechError | None:
        """Feeds audio until the client half-closes (None) or the duration limit (its error)."""
        settings = self._settings
        limit = settings.max_stream_chunk_bytes
        sample_bytes = 2 if plan.encoding == common_pb2.AUDIO_ENCODING_LINEAR16 else 1
        bytes_per_second = plan.sample_rate * sample_bytes * plan.channels
        allowed = int(settings.max_stream_seconds * plan.sample_rate) * sample_bytes * plan.channels
        pace = _Pace(self._loop, settings.stream_max_realtime_factor, settings.stream_burst_seconds)
        received = 0
        while True:
            request = await self._idle.next(self.inbox)
            if request is None:
                return None
            kind = request.WhichOneof("streaming_request")
            if kind == "streaming_config":
                raise InvalidArgument(
                    "streaming_config may only be sent once, in the first message"
                )
            chunk = request.audio_content
            if len(chunk) > limit:
                raise InvalidArgument(
                    f"audio_content chunk of {len(chunk)} bytes is larger than this server's "
                    f"limit of {limit} bytes; send smaller chunks (100 ms is typical)"
                )
            if not chunk:
                continue
            self._idle.touch()
            if received + len(chunk) > allowed:
                await session.feed(chunk[: allowed - received], self._loop.time())
                return OutOfRange(
                    f"the stream passed the maximum duration of {settings.max_stream_seconds:g} "
                    "s; audio after it was not transcribed (open a new stream to go on)"
                )
            received += len(chunk)
            await session.feed(chunk, self._loop.time())
            await pace.hold(received / bytes_per_second)
            self._idle.touch()  # time held back here is not the client's idleness


class _Pace:
    """Holds a stream back to ``factor`` times real time once ``burst_s`` of audio is in."""

    def __init__(self, loop: asyncio.AbstractEventLoop, factor: float, burst_s: float) -> None:
        self._loop = loop
        self._factor = factor
        self._burst_s = burst_s
        self._started = loop.time()

    async def hold(self, audio_s: float) -> None:
        if self._factor <= 0:
            return
        allowed = self._burst_s + self._factor * (self._loop.time() - self._started)
        if audio_s > allowed:
            # Rate limiting, not synchronisation: the client's audio waits in HTTP/2.
            await asyncio.sleep((audio_s - allowed) / self._factor)


class _IdleTimeout(Exception):
    pass


def _idle_error(seconds: float) -> DeadlineExceeded:
    return DeadlineExceeded(
        f"no audio arrived for {seconds:g} s (stt.stream_idle_timeout_s); the stream was "
        "closed after finalising what was heard"
    )


class _IdleClock:
    """Waits for the next request, but no longer than the idle limit allows."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit_s: float) -> None:
        self._loop = loop
        self._limit_s = limit_s
        self._last = loop.time()

    def touch(self) -> None:
        self._last = self._loop.time()

    async def next(self, inbox: _Inbox) -> stt_pb2.StreamingTranscribeRequest | None:
        """The next request; None when the client half-closed."""
        remaining = self._last + self._limit_s - self._loop.time()
        try:
            item = await asyncio.wait_for(inbox.get(), max(remaining, 0.0))
        except TimeoutError:
            raise _IdleTimeout() from None
        if isinstance(item, _RequestsOver):
            if item.error is not None:
                raise item.error
            return None
        return item


async def _read(requests: AsyncIterator[stt_pb2.StreamingTranscribeRequest], inbox: _Inbox) -> None:
    try:
        async for request in requests:
            await inbox.put(request)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        await inbox.put(_RequestsOver(error))
        return
    await inbox.put(_RequestsOver())
