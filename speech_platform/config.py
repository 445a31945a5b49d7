"""One typed place for every setting.

Values come, highest first, from environment variables (``SPEECH_`` prefix, ``__`` between
sections, e.g. ``SPEECH_STT__INSTANCES=2``), then an optional YAML file named by
``SPEECH_CONFIG_FILE`` (or ``--config``), then the defaults below, which are chosen to work on
a 2-core laptop with no Redis. ``REDIS_URL`` is honoured as a shortcut for ``cache.redis_url``
and ``jobs.broker_url``.

Redis is named by one URL shape for every client (the cache, the job store, the Celery broker
and result backend), see :class:`RedisConnectionSettings`; credentials and certificates go in
that section, so a password never has to sit in a URL or on a command line.
"""

from __future__ import annotations

import os
import sys
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ServiceName = Literal["stt", "tts", "jobs"]
#: speech.v1.Priority levels by name, for entitlements (speech_platform.priority).
PriorityName = Literal["low", "normal", "high"]
#: Roles a principal may hold: "admin" sees and cancels every principal's jobs.
RoleName = Literal["admin"]
EngineName = Literal["piper", "kokoro"]
ALL_SERVICES: tuple[ServiceName, ...] = ("stt", "tts", "jobs")
ALL_ENGINES: tuple[EngineName, ...] = ("piper", "kokoro")

#: Where assembled model assets live unless ``SPEECH_MODEL_DIR`` (``model_dir``) says
#: otherwise: the data directory of the Python environment the server runs in, like any
#: installed package's shared data. For the project's venv that is .venv/share/speech-models
#: (where `make run` builds them), in the image /app/.venv/share/speech-models; and it never
#: points into a source checkout, so an installed wheel finds the same place.
DEFAULT_MODEL_DIR = Path(sys.prefix) / "share" / "speech-models"

#: The YAML file ``load_settings`` was given, for the settings being built in this context
#: (the process environment is never written).
_CONFIG_FILE: ContextVar[str | None] = ContextVar("speech_config_file", default=None)


class BatcherSettings(BaseModel):
    """Dispatch rules of one engine's dynamic batcher (Triton semantics, see batcher/)."""

    max_batch_size: int = Field(8, ge=1, le=1024)
    #: Dispatch at once when this many are waiting; empty means only max_batch_size.
    preferred_batch_sizes: list[int] = Field(default_factory=list)
    #: The longest a request waits for companions, in milliseconds.
    max_queue_delay_ms: float = Field(5.0, ge=0)
    #: Requests waiting (not yet computing) beyond which new ones get RESOURCE_EXHAUSTED.
    max_queue_size: int = Field(256, ge=1)
    #: Upper bound on the summed cost of a batch (seconds of audio, phonemes); 0 = none.
    max_batch_cost: float = Field(0.0, ge=0)
    #: Items whose cost differs from the batch head's by more than this factor wait for
    #: another batch, to keep padding small; 0 turns the grouping off.
    similar_cost_ratio: float = Field(0.0, ge=0)
    #: Seconds of waiting that raise a request's priority by one level.
    priority_aging_s: float = Field(2.0, gt=0)
    #: Levels aging may add at most (0: no cap; batcher.policy).
    priority_aging_max_levels: int = Field(0, ge=0)
    #: With a latency target (ms), the batcher learns the cost of a batch and waits only
    #: while waiting pays; 0 keeps the fixed max_queue_delay.
    target_latency_ms: float = Field(0.0, ge=0)
    #: Refuse at arrival (RESOURCE_EXHAUSTED with a retry delay) a request the batcher
    #: predicts will miss its deadline, from the work queued ahead and the compute rate it
    #: learnt (batcher/admission.py); false lets it wait and fail at its deadline.
    admission: bool = True
    #: With admission, also refuse what is predicted to take longer than this (ms) in all,
    #: with or without a deadline; 0 = only deadlines count.
    latency_objective_ms: float = Field(0.0, ge=0)
    #: With admission, the share of the deadline kept in reserve for estimate error: a
    #: request is admitted only if predicted to finish that much before its deadline.
    admission_margin: float = Field(0.15, ge=0, lt=1)
    #: CPU priority (Linux nice, 0-19) of this model's compute threads. Above 0 the event
    #: loop's thread (arrivals, refusals, health checks, stream I/O) runs first whenever it
    #: has work, instead of waiting for a time slice among the model threads; the models
    #: still get every cycle the loop leaves (speech_platform/batching.py).
    compute_nice: int = Field(10, ge=0, le=19)
    #: The share of max_queue_size one caller (principal, or peer host without auth) may
    #: hold waiting; past it that caller alone is refused (RESOURCE_EXHAUSTED, and TTS
    #: does not spill it onto the other engine), so a flood never fills the queue for all.
    max_caller_queue_share: float = Field(0.5, gt=0, le=1)
    #: The share applies while another caller arrived within this many seconds (or has
    #: work waiting): a lone caller, e.g. every client behind one proxy without auth, may
    #: use the whole queue.
    caller_presence_s: float = Field(10.0, ge=0)
    #: Instances on top of ``instances`` that run only the work of a caller with nothing
    #: running on this model, at half the compute_nice: a light caller's request starts at
    #: once while a flood keeps every other instance busy (a running item cannot be
    #: interrupted). Each is one more thread, and one more model copy where instances do
    #: not share weights.
    express_instances: int = Field(0, ge=0, le=8)


class SttBatcherSettings(BatcherSettings):
    """Whisper windows; queues are deep (long audio). Each window is one request's own
    audio, sized to its length (stt_service/whisper_engine.py), so windows batch only with
    windows of the same encoder length (``similar_cost_ratio``: the cost is the encoder
    length in seconds, and the buckets differ by 1.5x or more). On a CPU, batching saves
    decoder time on short windows, so batches of up to 4 are taken from what queued while
    both instances were busy; nothing waits for company when an instance is idle
    (figures: docs/benchmarks.md). On a GPU: max_batch_size 16-64, one instance."""

    max_batch_size: int = Field(4, ge=1, le=1024)
    max_queue_delay_ms: float = Field(0.0, ge=0)
    max_queue_size: int = Field(512, ge=1)
    similar_cost_ratio: float = Field(1.4, ge=0)


class PiperBatcherSettings(BatcherSettings):
    """Piper sentences: one per call (padded batches lose on a small CPU), scaled by instances."""

    max_batch_size: int = Field(1, ge=1, le=1024)
    max_queue_delay_ms: float = Field(0.0, ge=0)
    max_queue_size: int = Field(512, ge=1)
    #: A request's later sentences sit up to 3 levels below its first (tts_service/
    #: synthesizer.py): when a caller's own newer first sentences overtake them, aging
    #: lifts them back to their first sentence's level and no further, so a flood's
    #: overtaken sentences never climb past other callers' new requests (batcher.core).
    priority_aging_max_levels: int = Field(3, ge=0)
    #: Piper's instances share one session (no weights copied), so a third thread for
    #: light callers costs no memory; beside a flood it keeps a polite caller's sentence
    #: from waiting for a long one to finish (figures: docs/benchmarks.md, Overload).
    express_instances: int = Field(1, ge=0, le=8)


class KokoroBatcherSettings(BatcherSettings):
    """Kokoro sentences: the ONNX graph takes batch 1."""

    max_batch_size: int = Field(1, ge=1, le=1)
    max_queue_delay_ms: float = Field(0.0, ge=0)
    max_queue_size: int = Field(128, ge=1)
    priority_aging_max_levels: int = Field(3, ge=0)


class TlsSettings(BaseModel):
    """Server certificate, and client certificates (mTLS) when a client CA is given.

    The files are read again when they change (checked at each new connection), so a
    rotated Kubernetes Secret or cert-manager renewal takes effect without a restart."""

    #: PEM certificate chain of the server; with ``key_file`` it turns TLS on.
    cert_file: str = ""
    key_file: str = ""
    #: PEM CA bundle that signs client certificates: when set, every client must present a
    #: certificate it signed (mTLS), and the certificate's subject CN names the principal.
    client_ca_file: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file and self.key_file)

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsSettings:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("server.tls: set both cert_file and key_file, or neither")
        if self.client_ca_file and not self.enabled:
            raise ValueError("server.tls.client_ca_file needs cert_file and key_file")
        return self


class PrincipalSettings(BaseModel):
    """One known caller: the credentials that name it and what it may do.

    A bearer token is given as ``token_sha256`` (hex digest: the config then holds no
    secret), ``token_env`` (an environment variable holding it, e.g. from a Secret) or
    ``token`` (the token itself). Under mTLS a client certificate whose subject CN equals
    ``name`` (or ``cert_common_name``) is this principal too."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@:-]{1,128}$")
    token: str = ""
    token_sha256: str = Field("", pattern=r"^([0-9a-fA-F]{64})?$")
    token_env: str = ""
    cert_common_name: str = ""
    roles: list[RoleName] = Field(default_factory=list)
    #: The highest priority this principal's requests are served at; asking for more is
    #: served at this level.
    max_priority: PriorityName = "normal"

    @field_validator("name")
    @classmethod
    def _not_anonymous(cls, name: str) -> str:
        if name == "anonymous":
            raise ValueError("'anonymous' names every caller while auth is off; pick another")
        return name


class AuthSettings(BaseModel):
    """Who may call (speech_platform/principals.py). Auth is on when any principal or
    ``server.auth_tokens`` is configured, or when mTLS is (``server.tls.client_ca_file``)."""

    principals: list[PrincipalSettings] = Field(default_factory=list)
    #: A YAML (or JSON) list of principals in the form above, e.g. a mounted Secret; its
    #: entries are added to ``principals``.
    principals_file: str = ""
    #: RPC method prefixes served without credentials (orchestrators' probes, grpcurl list).
    open_methods: list[str] = Field(
        default_factory=lambda: ["grpc.health.v1.", "grpc.reflection."]
    )
    #: The priority cap of callers without an entitlement of their own: everyone while
    #: auth is off, ``server.auth_tokens`` tokens, and client certificates naming no
    #: principal. High priority is thus granted by configuration, never self-claimed.
    default_max_priority: PriorityName = "normal"


class ServerSettings(BaseModel):
    host: str = "0.0.0.0"
    port: int = Field(50051, ge=0, le=65535)
    metrics_port: int = Field(9464, ge=0, le=65535)
    #: The OpenAI-compatible HTTP and WebSocket API (speech_http/), served by the same
    #: process on the same event loop, over the same cores, cache and limits; 0 disables it.
    http_port: int = Field(8000, ge=0, le=65535)
    #: Largest HTTP upload (a whole multipart body) accepted, in MiB; a larger one gets 413
    #: before it is read (OpenAI's own limit is 25 MB).
    http_max_upload_mb: float = Field(25.0, gt=0)
    services: list[ServiceName] = Field(default_factory=lambda: list(ALL_SERVICES))
    #: Largest request accepted, the same 25 MiB as an HTTP upload (``http_max_upload_mb``):
    #: 10 minutes of 16 kHz 16-bit PCM is 19.2 MB. gRPC refuses a larger message at its
    #: length prefix, before buffering it; one under it is read whole before any handler
    #: runs, so this times the concurrent uploads bounds what they hold (docs/benchmarks.md).
    max_receive_message_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    max_send_message_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    #: Seconds in-flight work gets to finish after SIGTERM.
    drain_grace_s: float = Field(25.0, ge=0)
    #: Close client connections after this long (plus a grace) so that long-lived HTTP/2
    #: connections rebalance across pods behind kube-proxy; 0 disables.
    max_connection_age_s: float = Field(300.0, ge=0)
    max_connection_age_grace_s: float = Field(30.0, ge=0)
    #: Bearer tokens accepted in the "authorization" metadata (the older, shorter form of
    #: ``auth.principals``): each becomes a principal named ``token-<first 12 hex of its
    #: SHA-256>`` with ``auth.default_max_priority`` and no roles.
    auth_tokens: list[str] = Field(default_factory=list)
    #: TLS for the gRPC port (speech_server/tls.py); off (plaintext) unless cert and key set.
    tls: TlsSettings = Field(default_factory=TlsSettings)
    #: A second, plaintext port that serves grpc.health.v1 only (no speech service, no
    #: reflection): Kubernetes' native gRPC probes speak no TLS, so with ``tls`` on the
    #: probes ask here. -1 = none (0 picks a free port).
    health_port: int = Field(-1, ge=-1, le=65535)
    log_level: str = "WARNING"
    log_json: bool = True
    #: glibc malloc heaps for the process (speech_platform/memory.py: fewer heaps hold less
    #: memory per thread at the same speed; figures in docs/benchmarks.md); 0 leaves
    #: glibc's 8 per core.
    malloc_arena_max: int = Field(2, ge=0, le=1024)
    #: Threads each BLAS library in the process (NumPy's OpenBLAS) may use. The models'
    #: parallelism is their instances'; spare BLAS workers only spin, at the event loop's
    #: priority (speech_platform/native_threads.py). 0 leaves the library's default.
    blas_threads: int = Field(1, ge=0, le=1024)
    #: How long, in ms, a thread waiting for the GIL lets the holder keep it (CPython's
    #: default is 5): shorter, the event loop takes a burst's calls in sooner while model
    #: threads run Python (speech_platform/native_threads.py). Set by the speech-server
    #: command for its process (not by a server embedded in another program); 0 leaves
    #: CPython's default.
    gil_switch_interval_ms: float = Field(0.5, ge=0, le=100)
    #: Once started, the speech-server command freezes the heap start-up built (models,
    #: modules) out of the garbage collector's walks (speech_platform/collector.py).
    gc_freeze_after_start: bool = True
    #: Objects the collector's youngest generation may hold before it is collected
    #: (CPython's default is 700); 0 leaves the default. Set by the speech-server command
    #: for its process, like gc_freeze_after_start.
    gc_young_threshold: int = Field(10_000, ge=0)
    #: Bytes that requests in flight may hold in all (audio as received, a bound on what
    #: decoding makes of it), in MiB; a request that would pass it gets RESOURCE_EXHAUSTED
    #: before decoding (speech_platform/budget.py). 0 = no limit.
    memory_budget_mb: int = Field(1024, ge=0)
    #: After a burst, once no request holds memory, free heap pages go back to the OS
    #: (glibc malloc_trim), checked this often in seconds; 0 = never.
    trim_idle_memory_s: float = Field(5.0, ge=0)


class SttSettings(BaseModel):
    default_model: str = "tiny.en"
    #: Models loaded at start; requests may name any of these.
    models: list[str] = Field(default_factory=lambda: ["tiny.en"])
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: str = "int8"
    #: Model instances, each with its own thread and CTranslate2 replica.
    instances: int = Field(2, ge=1, le=64)
    cpu_threads: int = Field(1, ge=0, le=64)
    default_beam_size: int = Field(5, ge=1, le=10)
    #: Encoder lengths (seconds) a window may be sized to: each window is encoded at the
    #: smallest that holds its audio plus ``encoder_margin_s`` (stt_service/whisper_engine.py).
    #: Shorter buckets cost less; below 10 s Whisper loops on some real clips, and at 10 s
    #: it dropped a spoken word on a CPU with other int8 kernels (docs/benchmarks.md).
    encoder_buckets_s: list[float] = Field(default_factory=lambda: [15.0, 20.0, 30.0])
    encoder_margin_s: float = Field(1.0, ge=0.0, le=5.0)
    #: Longest audio a unary Transcribe accepts, in seconds (longer goes to a job).
    max_audio_seconds: float = Field(600.0, gt=0)
    batcher: SttBatcherSettings = Field(default_factory=SttBatcherSettings)
    # streaming recognition
    max_stream_seconds: float = Field(3600.0, gt=0)
    stream_idle_timeout_s: float = Field(30.0, gt=0)
    max_stream_chunk_bytes: int = Field(1024 * 1024, ge=1024)
    default_interim_interval_ms: int = Field(1000, ge=100)
    default_endpoint_silence_ms: int = Field(600, ge=100)
    #: Streams served at once, in all and per caller (token, or peer host without auth);
    #: one more is refused with RESOURCE_EXHAUSTED.
    max_concurrent_streams: int = Field(64, ge=1)
    max_streams_per_caller: int = Field(16, ge=1)
    #: A stream's audio is accepted at most this many times faster than real time, after
    #: ``stream_burst_seconds`` taken at any speed; a faster client is slowed by HTTP/2
    #: flow control (its audio waits on its side). 0 = no limit.
    stream_max_realtime_factor: float = Field(2.0, ge=0)
    stream_burst_seconds: float = Field(20.0, ge=0)
    #: A new interim decode is admitted into a model's batcher only while fewer streaming
    #: decodes than this (interims plus finals in flight, all streams) are under way;
    #: 0 = one fewer than the model's instances, at least 1, so that an instance stays
    #: free for finals (measured: lower final latency; see stt_service/streaming/gate.py).
    stream_decode_capacity: int = Field(0, ge=0, le=4096)

    @field_validator("encoder_buckets_s")
    @classmethod
    def _buckets_fit_a_window(cls, buckets: list[float]) -> list[float]:
        if not buckets or any(not 0 < b <= 30 for b in buckets):
            raise ValueError("stt.encoder_buckets_s must list lengths in (0, 30] seconds")
        return sorted(buckets)


class TtsSettings(BaseModel):
    engines: list[EngineName] = Field(default_factory=lambda: list(ALL_ENGINES))
    default_piper_voice: str = "en_US-joe-medium"
    default_kokoro_voice: str = "af_heart"
    #: Longest text one request may send, in characters as sent.
    max_text_chars: int = Field(5000, ge=1)
    #: Longest text once numbers, symbols and abbreviations are spelled out (5,000 digits
    #: become about 54,000 characters): refused before anything is phonemized.
    max_normalized_chars: int = Field(20000, ge=1)
    #: Most sentences in one request (short ones are then joined into at most 64 items).
    max_sentences: int = Field(400, ge=1)
    #: Longest audio one request may ask for, estimated from its normalised text and
    #: speaking rate (tts_service/limits.py); longer work belongs in a synthesis job.
    max_output_seconds: float = Field(1200.0, gt=0)
    piper_instances: int = Field(2, ge=1, le=64)
    piper_threads: int = Field(1, ge=0, le=64)
    #: Padded batches through one ONNX call; measured slower on a 2-core CPU, so off.
    piper_padded_batching: bool = False
    kokoro_instances: int = Field(1, ge=1, le=64)
    #: "cuda" runs Kokoro on a GPU (gpu image: onnxruntime-gpu); Piper stays on the CPU.
    kokoro_device: Literal["cpu", "cuda"] = "cpu"
    #: When an overloaded engine's requests go to the other engine's stand-in voice:
    #: "adds_capacity" when that engine is on another device or costs less compute per
    #: phoneme on the same one (on one CPU, Piper's overload sent to Kokoro takes ~10x the
    #: CPU per sentence from everyone: docs/benchmarks.md); "always"; "never". A failing
    #: engine's requests always go to the stand-in (unless the request disables fallback).
    overload_fallback: Literal["adds_capacity", "always", "never"] = "adds_capacity"
    kokoro_threads: int = Field(2, ge=0, le=64)
    piper_batcher: PiperBatcherSettings = Field(default_factory=PiperBatcherSettings)
    kokoro_batcher: KokoroBatcherSettings = Field(default_factory=KokoroBatcherSettings)
    #: StreamingSynthesizeText: how long a started sentence waits for its end before it is
    #: cut at its last clause mark or word (a client's max_sentence_wait_ms overrides it).
    text_stream_max_wait_ms: int = Field(2000, ge=1, le=60_000)
    #: StreamingSynthesizeText: a sentence longer than this, still without an end, is cut at
    #: its last clause mark or word at once (a client's clause_fallback_chars overrides it).
    text_stream_clause_chars: int = Field(200, ge=40, le=1000)


class RedisConnectionSettings(BaseModel):
    """How to authenticate to, and encrypt the link with, a Redis named by a URL.

    The URL (``cache.redis_url``, ``jobs.broker_url``) says where, in one of four shapes:

    * ``redis://[:password@]host:6379[/db]``: one server; ``rediss://`` the same over TLS;
    * ``sentinel://[:password@]host1:26379,host2:26379,host3:26379/<master_name>[/db]``:
      ask these Sentinels which server is the master of ``master_name``, and follow it
      through failovers; ``sentinels://`` the same with TLS to the Sentinels and the master.

    Every client (cache, job store, Celery broker and result backend) reads the same shape
    (speech_platform/redis_connection.py). A password here wins over one in the URL.
    """

    #: The password; prefer ``password_file`` (a mounted Kubernetes Secret).
    password: str = ""
    #: A file holding the password (read once at start, surrounding whitespace dropped).
    password_file: str = ""
    #: ACL user name; empty means the default user.
    username: str = ""
    #: TLS: the CA that signed the server's certificate; empty uses the system's CAs. TLS
    #: itself is chosen by the URL scheme (``rediss://``, ``sentinels://``).
    tls_ca_file: str = ""
    #: TLS client certificate and key, for servers that verify clients (tls-auth-clients).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: Whether the Sentinels need the same password as the servers (they do in k8s/, where
    #: both read one Secret); false talks to Sentinels without AUTH.
    sentinel_auth: bool = True


class CacheSettings(BaseModel):
    #: "memory" (in-process LRU, default), "redis", "tiered" (LRU in front of Redis) or "off".
    backend: Literal["memory", "redis", "tiered", "off"] = "memory"
    #: Where the cache's Redis is: redis://, rediss://, sentinel:// or sentinels:// (see
    #: RedisConnectionSettings). Cache Redis evicts (allkeys-lru); never share it with jobs.
    redis_url: str = ""
    #: Credentials and TLS files for ``redis_url``.
    redis: RedisConnectionSettings = Field(default_factory=RedisConnectionSettings)
    key_prefix: str = "speech:cache:"
    ttl_s: int = Field(7 * 24 * 3600, ge=1)
    max_value_bytes: int = Field(16 * 1024 * 1024, ge=1)
    memory_max_bytes: int = Field(256 * 1024 * 1024, ge=0)
    #: Redis calls slower than this are abandoned (the request goes on without cache).
    redis_timeout_s: float = Field(0.25, gt=0)
    #: After a failure, skip Redis for this long before trying again.
    breaker_cooldown_s: float = Field(5.0, gt=0)
    #: Across replicas: how long one waits for another replica's in-flight result.
    lock_ttl_s: float = Field(30.0, gt=0)
    lock_wait_s: float = Field(10.0, ge=0)


class JobsSettings(BaseModel):
    #: "local" runs jobs in-process; "celery" sends them to workers over the broker.
    backend: Literal["local", "celery"] = "local"
    #: The jobs' Redis (job store, Celery broker and result backend): redis://, rediss://,
    #: sentinel:// or sentinels:// (see RedisConnectionSettings). It must never evict
    #: (maxmemory-policy noeviction): an evicted record or message is a lost job.
    broker_url: str = ""
    #: Credentials and TLS files for ``broker_url``.
    redis: RedisConnectionSettings = Field(default_factory=RedisConnectionSettings)
    #: How long job store calls and broker publishes keep reconnecting after the jobs'
    #: Redis connection drops (a Sentinel failover takes a few seconds), before the call
    #: fails (UNAVAILABLE to a client, a retry for a worker).
    redis_retry_s: float = Field(10.0, ge=0)
    #: Replicas that must hold a job's submission (record and broker message) before it is
    #: answered OK, and a cancel (Redis WAIT); a worker's state changes wait for them too,
    #: but only log when they do not come. Replication is otherwise asynchronous: a
    #: failover could lose a submit already answered OK. 0 = do not wait (one Redis); with
    #: Sentinel, at most the replicas left after one failure.
    replica_acks: int = Field(0, ge=0, le=16)
    #: How long to wait for those replicas; when fewer confirm, the call fails UNAVAILABLE
    #: and a submit retried with the same job_id is harmless.
    replica_ack_timeout_ms: int = Field(2000, ge=1)
    local_concurrency: int = Field(1, ge=1, le=64)
    max_audio_bytes: int = Field(512 * 1024 * 1024, ge=1)
    #: Audio that jobs queued in this process (the local backend) may hold in all, in MiB;
    #: past it a submission gets RESOURCE_EXHAUSTED. 0 = no cap.
    max_queued_audio_mb: int = Field(1024, ge=0)
    #: Directories a transcription job's ``file://`` URI may name a file under (a volume
    #: the workers share). Empty (the default) refuses every file:// URI. A path is walked
    #: one component at a time without following symbolic links (speech_jobs/sources.py).
    file_roots: list[Path] = Field(default_factory=list)
    max_audio_seconds: float = Field(4 * 3600.0, gt=0)
    max_texts: int = Field(10_000, ge=1)
    #: Must exceed the longest job, or Redis re-delivers a job still running.
    visibility_timeout_s: int = Field(4 * 3600, ge=60)
    result_ttl_s: int = Field(7 * 24 * 3600, ge=60)
    transcription_queue: str = "speech-transcription"
    synthesis_queue: str = "speech-synthesis"
    #: Prefix of the job records, audio blobs and results in Redis.
    key_prefix: str = "speech:jobs:"
    #: A running job's owner renews its lease every third of this; when a worker dies the
    #: lease lapses and another worker re-queues the job (long before visibility_timeout_s).
    lease_ttl_s: float = Field(30.0, ge=1.0)
    #: After SIGTERM a worker lets its current job run this long, then stops it between
    #: windows and puts it back on the queue (keep it under the pod's termination grace).
    worker_drain_s: float = Field(20.0, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SPEECH_", env_nested_delimiter="__", extra="ignore"
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    stt: SttSettings = Field(default_factory=SttSettings)
    tts: TtsSettings = Field(default_factory=TtsSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    #: Where assembled model assets live (built by `make run` / `make test`).
    model_dir: Path = DEFAULT_MODEL_DIR

    @model_validator(mode="after")
    def _redis_url_shortcut(self) -> Settings:
        url = os.environ.get("REDIS_URL", "")
        if url and not self.cache.redis_url:
            self.cache.redis_url = url
        if url and not self.jobs.broker_url:
            self.jobs.broker_url = url
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls))


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file given to ``load_settings``, else the one SPEECH_CONFIG_FILE names."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _CONFIG_FILE.get() or os.environ.get("SPEECH_CONFIG_FILE", "")
        if not path:
            return {}
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        return data


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Builds settings from the environment and an optional YAML file.

    ``config_file`` takes the place of SPEECH_CONFIG_FILE for these settings only; the
    process environment is left as it was.

    >>> load_settings().server.port
    50051
    """
    token = _CONFIG_FILE.set(config_file or None)
    try:
        return Settings(**overrides)
    finally:
        _CONFIG_FILE.reset(token)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, for command-line entry points only: engines and cores are
    handed their settings by the composition root (speech_server), never look them up."""
    return load_settings()
