"""Why a request got no result. Plain exceptions: the batcher knows nothing of gRPC."""

from __future__ import annotations


class BatcherError(Exception):
    """Base of every failure the batcher itself decides."""


class QueueFull(BatcherError):
    """max_queue_size requests are already waiting; the new one was not accepted."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Overloaded(QueueFull):
    """Admission control predicted the request would not finish in time; not accepted."""


class CallerOverloaded(Overloaded):
    """Refused for the caller's own waiting work (its share of the queue is used up, or its
    own backlog is what would make it late): other callers are still served, so sending
    it elsewhere on this server (another engine) would only spread the flood."""


class DeadlineExpired(BatcherError):
    """The request's deadline passed while it waited; it was never computed."""


class RequestCancelled(BatcherError):
    """The caller went away while the request waited; it was never computed."""


class BatcherClosed(BatcherError):
    """The batcher is draining or stopped and takes no new work."""
