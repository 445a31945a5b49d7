"""Generic dynamic micro-batching for asyncio servers. Knows nothing about speech.

``Batcher`` (batcher.core) packs concurrent requests into batches on a pool of model
instances under a ``BatchPolicy``; failures are the exceptions in batcher.errors.
"""

from batcher.adaptive import AdaptiveDelay
from batcher.admission import SharedDevice
from batcher.core import Batcher, BatchFunction, HandlerFactory, Reservation
from batcher.errors import (
    BatcherClosed,
    BatcherError,
    CallerOverloaded,
    DeadlineExpired,
    Overloaded,
    QueueFull,
    RequestCancelled,
)
from batcher.observer import BatchObserver, FanOutObserver, RecordingObserver
from batcher.policy import BatchPolicy

__all__ = [
    "AdaptiveDelay",
    "BatchFunction",
    "BatchObserver",
    "BatchPolicy",
    "Batcher",
    "BatcherClosed",
    "BatcherError",
    "CallerOverloaded",
    "DeadlineExpired",
    "FanOutObserver",
    "HandlerFactory",
    "Overloaded",
    "QueueFull",
    "RecordingObserver",
    "RequestCancelled",
    "Reservation",
    "SharedDevice",
]
