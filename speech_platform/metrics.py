"""Every Prometheus metric of the platform, defined once, so names stay consistent across
servers, workers, alerts (k8s/monitoring) and dashboards.

Label conventions: ``service`` is stt/tts/jobs; ``method`` the gRPC method name;
``model`` the batcher's engine model (e.g. "whisper-tiny.en", "piper", "kokoro").
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)

# -- gRPC requests (the metrics interceptor)
REQUESTS = Counter(
    "speech_requests_total", "gRPC requests finished", ["service", "method", "code"]
)
REQUEST_LATENCY = Histogram(
    "speech_request_duration_seconds",
    "gRPC request latency, from arrival to the last response byte",
    ["service", "method"],
    buckets=_LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("speech_requests_in_flight", "gRPC requests being served", ["service"])

# -- HTTP requests (speech_http, the OpenAI-compatible front door)
HTTP_REQUESTS = Counter(
    "speech_http_requests_total", "HTTP API requests finished", ["route", "status"]
)
HTTP_REQUEST_LATENCY = Histogram(
    "speech_http_request_duration_seconds",
    "HTTP API request latency, from arrival to the response's first byte",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)

# -- batchers
BATCH_QUEUE_SECONDS = Histogram(
    "speech_batcher_queue_seconds", "Time a request waited for its batch", ["model"],
    buckets=_LATENCY_BUCKETS,
)
BATCH_COMPUTE_SECONDS = Histogram(
    "speech_batcher_compute_seconds", "Time one batch computed", ["model"],
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "speech_batcher_batch_size", "Requests per batch", ["model"], buckets=_BATCH_BUCKETS
)
BATCH_PENDING = Gauge(
    "speech_batcher_pending", "Requests waiting for a batch (autoscaling signal)", ["model"]
)
BATCH_REJECTIONS = Counter(
    "speech_batcher_rejections_total",
    "Requests the batcher did not compute, by reason (queue_full, deadline, cancelled, closed)",
    ["model", "reason"],
)
BATCH_TOP_CALLER_SHARE = Gauge(
    "speech_batcher_top_caller_share",
    "Share of the waiting work (cost) held by the caller with the most waiting; 0 when idle",
    ["model"],
)
BATCH_QUEUED_CALLERS = Gauge(
    "speech_batcher_queued_callers", "Callers with work waiting for a batch", ["model"]
)
REFUSALS = Counter(
    "speech_refusals_total",
    "Requests refused by a server limit before any work (batcher refusals are counted in "
    "speech_batcher_rejections_total): memory_budget, streams, streams_per_caller",
    ["reason"],
)
BATCH_ITEM_FAILURES = Counter(
    "speech_batcher_item_failures_total", "Batch items whose engine call failed", ["model"]
)

# -- cache
CACHE_HITS = Counter("speech_cache_hits_total", "Response cache hits", ["service", "tier"])
CACHE_MISSES = Counter("speech_cache_misses_total", "Response cache misses", ["service"])
CACHE_ERRORS = Counter(
    "speech_cache_errors_total", "Cache backend failures (requests still served)", ["backend"]
)
CACHE_BYTES = Gauge("speech_cache_memory_bytes", "Bytes held by the in-process cache")
MEMORY_BUDGET_IN_USE = Gauge(
    "speech_memory_budget_in_use_bytes",
    "Bytes reserved by requests in flight against server.memory_budget_mb",
)
CACHE_SINGLEFLIGHT_JOINS = Counter(
    "speech_cache_singleflight_joins_total",
    "Requests that waited for an identical in-flight computation instead of computing",
    ["service", "scope"],
)
CACHE_BREAKER_OPEN = Gauge(
    "speech_cache_breaker_open", "1 while the Redis circuit breaker skips Redis"
)

# -- engines and services
TTS_TIME_TO_FIRST_AUDIO = Histogram(
    "speech_tts_time_to_first_audio_seconds",
    "StreamingSynthesize: arrival to first audio chunk",
    ["engine"],
    buckets=_LATENCY_BUCKETS,
)
TTS_FALLBACKS = Counter(
    "speech_tts_fallbacks_total", "Requests served by the other engine", ["from_engine", "reason"]
)
ENGINE_AUDIO_SECONDS = Counter(
    "speech_engine_audio_seconds_total", "Seconds of audio transcribed or synthesized", ["model"]
)
STT_STREAMS_ACTIVE = Gauge("speech_stt_streams_active", "Live StreamingTranscribe streams")
STT_STREAM_INTERIM_LATENCY = Histogram(
    "speech_stt_stream_interim_latency_seconds",
    "End of the audio an interim result covers to the result being sent",
    buckets=_LATENCY_BUCKETS,
)
STT_STREAM_FINAL_LATENCY = Histogram(
    "speech_stt_stream_final_latency_seconds",
    "Endpoint (end of speech) to the final result being sent",
    buckets=_LATENCY_BUCKETS,
)

# -- jobs
JOBS = Counter("speech_jobs_total", "Jobs reaching a final state", ["kind", "state"])
JOB_DURATION = Histogram(
    "speech_job_duration_seconds", "Job run time", ["kind"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
JOBS_RUNNING = Gauge("speech_jobs_running", "Jobs running in this process", ["kind"])


class PrometheusBatchObserver:
    """Feeds a batcher's events into the batcher metrics for one model label."""

    def __init__(self, model: str) -> None:
        self._queue = BATCH_QUEUE_SECONDS.labels(model)
        self._compute = BATCH_COMPUTE_SECONDS.labels(model)
        self._size = BATCH_SIZE.labels(model)
        self._pending = BATCH_PENDING.labels(model)
        self._failures = BATCH_ITEM_FAILURES.labels(model)
        self._model = model

    def pending_changed(self, pending: int) -> None:
        self._pending.set(pending)

    def rejected(self, reason: str) -> None:
        BATCH_REJECTIONS.labels(self._model, reason).inc()

    def batch_started(self, size: int, cost: float, queue_seconds: Sequence[float]) -> None:
        self._size.observe(size)
        for waited in queue_seconds:
            self._queue.observe(waited)

    def batch_finished(self, size: int, compute_seconds: float, failed: int) -> None:
        self._compute.observe(compute_seconds)
        if failed:
            self._failures.inc(failed)
