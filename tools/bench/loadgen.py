"""A closed-loop grpc.aio load generator: N clients, each sending its next request as soon as
the previous one is answered.

A measurement has two phases. Warm-up lasts until every client has had one answer (so the
server's queues hold their steady-state depth; with 16 clients on a one-at-a-time server
that is a full round), at least ``min_warmup_s`` and at most ``max_warmup_s``. The window
then lasts ``window_s`` (longer, up to a bound, until at least one answer per client came):
throughput is the answers completed inside it divided by its length, latencies are those of
the answers completed inside it. At the end of the window the calls
still in flight are cancelled, so no measurement waits for a queue to drain.

Requests are sent pre-serialized and answers parsed only as far as needed, so the client
spends little CPU. (Splitting the clients over several processes was tried for the null
engine and lost on a 2-core machine: the extra client process takes CPU from the server.)
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from speech.v1 import stt_pb2, tts_pb2
from tools.bench.workload import Request

#: The largest message either way (a 30 s WAV is 1 MB; synthesized long answers a few MB).
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


@dataclass(frozen=True)
class Answer:
    """What the bench needs from a response."""

    audio_s: float = 0.0
    text: str | None = None
    cache_hit: bool = False


def parse_transcribe(data: bytes) -> Answer:
    response = stt_pb2.TranscribeResponse.FromString(data)
    return Answer(response.audio_duration_seconds, response.text, response.cache_hit)


def parse_synthesize(data: bytes) -> Answer:
    response = tts_pb2.SynthesizeResponse.FromString(data)
    return Answer(response.audio_duration_seconds, None, response.cache_hit)


PARSERS: dict[str, Callable[[bytes], Answer]] = {
    "/speech.v1.SpeechToText/Transcribe": parse_transcribe,
    "/speech.v1.TextToSpeech/Synthesize": parse_synthesize,
}
TRANSCRIBE = "/speech.v1.SpeechToText/Transcribe"
SYNTHESIZE = "/speech.v1.TextToSpeech/Synthesize"


@dataclass(frozen=True)
class Target:
    address: str
    method: str
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LoadSpec:
    concurrency: int
    window_s: float
    min_warmup_s: float = 0.5
    max_warmup_s: float = 60.0
    #: Bound on calls issued in the whole measurement, warm-up included.
    max_requests: int = 500_000
    call_timeout_s: float = 300.0
    #: When fewer answers than this (default: one per client) came inside the window, it is
    #: extended until they have, up to ``max_window_factor`` times its length: on a slow
    #: engine or a busy machine a short window would otherwise measure nothing.
    min_answers: int | None = None
    max_window_factor: float = 3.0
    #: A measurement stops once this many calls failed: a misconfigured target fails fast,
    #: and a million fast failures would only fill memory.
    max_errors: int = 200


@dataclass
class Record:
    latency_s: float
    finished: float
    code: str
    request: Request
    answer: Answer | None


@dataclass
class LoadResult:
    concurrency: int
    window_s: float
    warmup_s: float
    issued: int
    #: Answers completed inside the window, in completion order.
    records: list[Record] = field(default_factory=list)
    #: Status codes of every answer (OK or not) that finished inside the window.
    codes: dict[str, int] = field(default_factory=dict)
    #: Why the measurement stopped early (too many failures), or None.
    aborted: str | None = None

    @property
    def ok(self) -> list[Record]:
        return [r for r in self.records if r.code == "OK"]


ProgressHook = Callable[[int], None]
#: Called with "start" and "end" at the edges of the window (e.g. to read server CPU time).
WindowHook = Callable[[str], None]


async def run_load(
    target: Target,
    requests: Sequence[Request],
    spec: LoadSpec,
    progress: ProgressHook | None = None,
    on_window: WindowHook | None = None,
) -> LoadResult:
    """One measurement: warm-up, then the window."""
    if not requests:
        raise ValueError("no requests to send")
    parser = PARSERS[target.method]
    async with grpc.aio.insecure_channel(target.address, options=_CHANNEL_OPTIONS) as channel:
        call = channel.unary_unary(target.method)
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
        return await _measure(call, parser, target, requests, spec, progress, on_window)


async def _measure(
    call: grpc.aio.UnaryUnaryMultiCallable,
    parser: Callable[[bytes], Answer],
    target: Target,
    requests: Sequence[Request],
    spec: LoadSpec,
    progress: ProgressHook | None,
    on_window: WindowHook | None,
) -> LoadResult:
    loop = asyncio.get_running_loop()
    started = loop.time()
    window: list[float] = []  # [start, end] once warm-up is over
    first_answers: set[int] = set()
    all_answered = asyncio.Event()
    issued = itertools.count()
    result = LoadResult(spec.concurrency, spec.window_s, 0.0, 0)
    metadata = target.metadata or None
    errors = [0]
    give_up = asyncio.Event()
    enough_answers = asyncio.Event()
    enough: list[int] = []  # set once the window is being extended: the answers wanted
    all_exited = asyncio.Event()
    live = [spec.concurrency]

    async def client(index: int) -> None:
        try:
            await _client_loop(index)
        finally:
            live[0] -= 1
            if live[0] == 0:
                all_exited.set()

    async def _client_loop(index: int) -> None:
        # Clients start at different points of the request list, so the mix is in flight.
        offset = index * max(1, len(requests) // max(spec.concurrency, 1))
        for turn in range(spec.max_requests):
            if give_up.is_set() or (window and loop.time() >= window[1]):
                return
            if next(issued) >= spec.max_requests:
                return
            request = requests[(offset + turn) % len(requests)]
            sent = time.perf_counter()
            answer: Answer | None = None
            try:
                data = await call(request.payload, timeout=spec.call_timeout_s, metadata=metadata)
                answer = parser(data)
                code = "OK"
            except grpc.aio.AioRpcError as error:
                code = error.code().name
                errors[0] += 1
                if errors[0] >= spec.max_errors:
                    result.aborted = f"{errors[0]} calls failed, the last with {code}"
                    give_up.set()
            finished = loop.time()
            latency = time.perf_counter() - sent
            if index not in first_answers:
                first_answers.add(index)
                if len(first_answers) == spec.concurrency:
                    all_answered.set()
            if window and window[0] <= finished <= window[1]:
                result.records.append(Record(latency, finished, code, request, answer))
                result.codes[code] = result.codes.get(code, 0) + 1
                if enough and len(result.records) >= enough[0]:
                    enough_answers.set()
                if progress is not None:
                    progress(1)

    tasks = [asyncio.create_task(client(i)) for i in range(spec.concurrency)]
    try:
        await _first_of(all_answered, give_up, all_exited, within_s=spec.max_warmup_s)
        now = loop.time()
        start = max(now, started + spec.min_warmup_s)
        if start > now:
            await _first_of(give_up, all_exited, within_s=start - now)  # a duration, no sync
        start = loop.time()
        window.extend([start, start + spec.window_s * spec.max_window_factor])
        result.warmup_s = start - started
        if on_window is not None:
            on_window("start")
        # The window is a wall-clock interval; waiting for its end is the measurement itself.
        await _first_of(give_up, all_exited, within_s=spec.window_s)
        wanted = spec.min_answers if spec.min_answers is not None else spec.concurrency
        if len(result.records) < wanted and not (give_up.is_set() or all_exited.is_set()):
            enough.append(wanted)
            await _first_of(give_up, all_exited, enough_answers,
                            within_s=window[1] - loop.time())
        end = min(loop.time(), window[1])
        window[1] = end  # answers after this moment no longer count
        result.window_s = end - start
        result.records = [r for r in result.records if r.finished <= end]
        result.codes = {}
        for record in result.records:
            result.codes[record.code] = result.codes.get(record.code, 0) + 1
        if on_window is not None:
            on_window("end")
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome  # a bug in the client loop, not a failed call
    result.issued = next(issued)
    return result


async def _first_of(*events: asyncio.Event, within_s: float) -> None:
    """Returns when any event is set or after ``within_s`` seconds."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(
            waiters, timeout=max(within_s, 0.0), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiter in waiters:
            waiter.cancel()


async def sequential_calls(
    target: Target, request: Request, count: int, *, time_cap_s: float
) -> tuple[Record, LoadResult]:
    """One call, then up to ``count`` more one after another (the same request each time):
    with a cache in front, the first is the miss and the rest are hits."""
    parser = PARSERS[target.method]
    metadata = target.metadata or None
    async with grpc.aio.insecure_channel(target.address, options=_CHANNEL_OPTIONS) as channel:
        call = channel.unary_unary(target.method)
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
        loop = asyncio.get_running_loop()

        async def once() -> Record:
            sent = time.perf_counter()
            try:
                data = await call(request.payload, timeout=300, metadata=metadata)
                answer: Answer | None = parser(data)
                code = "OK"
            except grpc.aio.AioRpcError as error:
                answer, code = None, error.code().name
            return Record(time.perf_counter() - sent, loop.time(), code, request, answer)

        first = await once()
        result = LoadResult(1, 0.0, 0.0, 1)
        started = loop.time()
        for _ in range(count):
            record = await once()
            result.issued += 1
            result.records.append(record)
            result.codes[record.code] = result.codes.get(record.code, 0) + 1
            if loop.time() - started > time_cap_s:
                break
        result.window_s = loop.time() - started
        return first, result


async def served_alone(
    target: Target, requests: Sequence[Request], *, timeout_s: float = 300.0
) -> dict[bytes, str | None]:
    """Each distinct request sent once with nothing else in flight: payload -> transcript
    (None when the call failed). The reference for the isolation count."""
    parser = PARSERS[target.method]
    metadata = target.metadata or None
    texts: dict[bytes, str | None] = {}
    async with grpc.aio.insecure_channel(target.address, options=_CHANNEL_OPTIONS) as channel:
        call = channel.unary_unary(target.method)
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
        for request in requests:
            if request.payload in texts:
                continue
            try:
                data = await call(request.payload, timeout=timeout_s, metadata=metadata)
                texts[request.payload] = parser(data).text
            except grpc.aio.AioRpcError:
                texts[request.payload] = None
    return texts
