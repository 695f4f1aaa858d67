"""Logging set-up, and a logger wrapper that keeps repeated errors from flooding the log."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# A message repeated more often than this is logged once per interval with a count of the rest.
REPEAT_INTERVAL = 10.0
# Control characters (a newline above all) would let text from outside forge log lines.
_CONTROL = {code: f"\\{code:03d}" for code in [*range(0x20), 0x7F]}


def printable(text: str) -> str:
    """``text`` from outside (an error message, a file's bytes) with every control character
    as ``\\DDD``, as names are printed (resolver.dns.wire.presentation)."""
    return text.translate(_CONTROL)


class RateLimitedLog:
    """Logs each distinct message format at most once per interval."""

    def __init__(self, logger: logging.Logger, interval: float = REPEAT_INTERVAL) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, tuple[float, int]] = {}

    def _allow(self, message: str) -> tuple[bool, int]:
        now = time.monotonic()
        last, suppressed = self._last.get(message, (-self.interval, 0))
        if now - last >= self.interval:
            self._last[message] = (now, 0)
            return True, suppressed
        self._last[message] = (last, suppressed + 1)
        return False, 0

    def log(self, level: int, message: str, *args: Any, exc_info: bool = False) -> None:
        allowed, suppressed = self._allow(message)
        if allowed:
            if suppressed:
                message += f" (and {suppressed} more like it)"
            self.logger.log(level, message, *args, exc_info=exc_info)

    def warning(self, message: str, *args: Any) -> None:
        self.log(logging.WARNING, message, *args)

    def exception(self, message: str, *args: Any) -> None:
        self.log(logging.ERROR, message, *args, exc_info=True)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Structured fields a caller passed as ``extra={"fields": {...}}`` (the query log).
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(level: str, json_format: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_format:
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The Docker SDK's HTTP library logs every API request at debug level: the Swarm source polls.
    logging.getLogger("urllib3").setLevel(max(root.level, logging.INFO))
