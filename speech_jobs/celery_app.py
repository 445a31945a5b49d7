"""The Celery app shared by the server (which publishes jobs) and the workers (which run them).

A message carries only ``{"job_id": ...}`` as JSON: the request, the audio and the result
live in the job store (redis_store), so large audio never travels through the broker and a
message can be re-delivered any number of times without effect beyond the first run.

Reliability settings, and why:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only after
  its job ended (or was handed back), so a worker dying mid-job leaves it unacknowledged.
* ``worker_prefetch_multiplier=1`` with the solo pool: a worker holds exactly the one job it
  runs, so a scale-down or a crash strands nothing else.
* ``visibility_timeout`` above the longest job: Redis re-delivers an unacknowledged message
  only after it, so a job still running is not handed to a second worker meanwhile. Faster
  recovery from a dead worker comes from the job lease (see worker.py), not from a short
  visibility timeout.
* JSON only (never pickle): a message cannot execute code in a worker.

The broker and the result backend are the jobs' Redis, named like every other Redis client
(speech_platform/redis_connection.py): ``redis://``/``rediss://`` give kombu's redis
transport (TLS through ``broker_use_ssl``), ``sentinel://``/``sentinels://`` its sentinel
transport, which asks the Sentinels for the master on each (re)connection; the password
comes from the settings (a mounted file), not from the configured URL.
"""

from __future__ import annotations

from celery import Celery

from speech_jobs.records import JobKind
from speech_platform.config import JobsSettings
from speech_platform.redis_connection import celery_redis, publish_retry_policy, redis_target

TASK_NAMES = {
    JobKind.TRANSCRIPTION: "speech.jobs.transcription",
    JobKind.SYNTHESIS: "speech.jobs.synthesis",
}


def queue_for(settings: JobsSettings, kind: JobKind) -> str:
    """One queue per kind, so each can be scaled (KEDA) on its own length."""
    if kind is JobKind.TRANSCRIPTION:
        return settings.transcription_queue
    return settings.synthesis_queue


def make_celery_app(settings: JobsSettings) -> Celery:
    if not settings.broker_url:
        raise ValueError(
            "jobs.backend is 'celery' but no broker is configured: set "
            "SPEECH_JOBS__BROKER_URL or REDIS_URL (redis://host:6379/0)"
        )
    redis = celery_redis(redis_target(settings.broker_url, settings.redis))
    transport = {"visibility_timeout": settings.visibility_timeout_s, **redis.transport_options}
    app = Celery("speech_jobs", broker=redis.url, backend=redis.url, set_as_current=False)
    if redis.ssl is not None:
        app.conf.update(broker_use_ssl=redis.ssl, redis_backend_use_ssl=redis.ssl)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        result_expires=settings.result_ttl_s,
        task_routes={
            TASK_NAMES[kind]: {"queue": queue_for(settings, kind)} for kind in JobKind
        },
        task_default_queue=settings.transcription_queue,
        broker_connection_retry_on_startup=True,
        # A publish whose connection dropped (a failover) reconnects, via the Sentinels,
        # for about as long as the job store retries.
        task_publish_retry_policy=publish_retry_policy(settings.redis_retry_s),
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        task_track_started=False,
        task_send_sent_event=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        enable_utc=True,
    )
    return app


def publish_job(app: Celery, settings: JobsSettings, kind: JobKind, job_id: str) -> None:
    """Queues one job (blocking: call it from a thread in async code).

    The task id is the job id, so a revoke names the job and repeated publishes of one job
    (a retried submit, a re-queue) are recognisably the same work.
    """
    app.send_task(
        TASK_NAMES[kind],
        kwargs={"job_id": job_id},
        queue=queue_for(settings, kind),
        task_id=job_id,
    )
