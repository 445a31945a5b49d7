"""Structured logging: one JSON object per line, quiet (WARNING) unless configured."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Hashable
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Emits fields a log pipeline can index; extra={...} keys become top-level fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class LogThrottle:
    """At most one line per key every ``interval_s``; the next line says how many were held
    back (field ``suppressed``). For events that repeat per request under load (a TTS
    fallback at 1,000 refusals a second would otherwise write 1,000 lines a second): the
    metric counts each one, the log says that it happens. Keys must be few (engine names,
    reasons), never caller-chosen strings."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        #: key -> (when its last line was written, lines held back since)
        self._state: dict[Hashable, tuple[float, int]] = {}

    def warning(self, key: Hashable, message: str, **fields: Any) -> None:
        now = self._clock()
        last, held = self._state.get(key, (-float("inf"), 0))
        if now - last < self._interval_s:
            self._state[key] = (last, held + 1)
            return
        self._state[key] = (now, 0)
        self._logger.warning(message, extra={**fields, "suppressed": held})


def configure_logging(level: str = "WARNING", as_json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
