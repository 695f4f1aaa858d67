"""The rate-limited log (a message at most once per interval, then with a count of the rest),
the JSON formatter with structured fields, and ``configure``."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator

import pytest

from resolver.ops.logs import JSONFormatter, RateLimitedLog, configure


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limited(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    # The limiter reads time.monotonic through the time module: patched there for this test.
    monkeypatch.setattr(time, "monotonic", clock)
    logger = logging.getLogger("dockdns.test-logs")
    limited = RateLimitedLog(logger, interval=10.0)
    caplog.set_level(logging.INFO, logger=logger.name)
    for n in range(5):
        limited.warning("bad packet from %s", f"10.0.0.{n}")
    limited.warning("another message")
    clock.now += 10
    limited.warning("bad packet from %s", "10.0.0.9")
    assert [r.getMessage() for r in caplog.records] == [
        "bad packet from 10.0.0.0", "another message",
        "bad packet from 10.0.0.9 (and 4 more like it)"]


def test_exception_carries_the_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="dockdns.test-exc")
    try:
        raise ValueError("boom")
    except ValueError:
        RateLimitedLog(logging.getLogger("dockdns.test-exc")).exception("failed")
    (entry,) = caplog.records
    assert entry.exc_info is not None and entry.exc_info[0] is ValueError


def test_json_formatter() -> None:
    record = logging.LogRecord("dockdns.queries", logging.INFO, __file__, 1, "query %s",
                               ("a\"b",), None)
    record.fields = {"client": "10.0.0.1", "answers": 2}
    entry = json.loads(JSONFormatter().format(record))
    assert entry["message"] == 'query a"b' and entry["level"] == "info"
    assert entry["logger"] == "dockdns.queries" and entry["answers"] == 2
    try:
        raise RuntimeError("x")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    assert "RuntimeError" in json.loads(JSONFormatter().format(record))["exception"]


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    urllib3 = logging.getLogger("urllib3").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(urllib3)


def test_configure(root_restored: None) -> None:
    configure("debug", json_format=True)
    root = logging.getLogger()
    (handler,) = root.handlers
    assert isinstance(handler.formatter, JSONFormatter) and root.level == logging.DEBUG
    assert logging.getLogger("urllib3").level == logging.INFO
    configure("warning")
    assert not isinstance(root.handlers[0].formatter, JSONFormatter)
    assert logging.getLogger("urllib3").level == logging.WARNING
