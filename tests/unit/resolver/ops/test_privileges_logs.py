"""Dropping root after binding, JSON logs, the query log and rate-limited repeated errors."""

from __future__ import annotations

import json
import logging
import os
import pwd
import signal
import tempfile
import time

import pytest

from resolver.ops.logs import RateLimitedLog
from tests.integration.test_signals import wait_for
from tests.support.daemon import dockdns, http_get
from tests.support.net import ask


def _ids(pid: int, field: str) -> list[int]:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return [int(value) for value in line.split()[1:]]
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (CI runs as root)")
def test_user_drops_root_after_binding() -> None:
    nobody = pwd.getpwnam("nobody")
    # Not under pytest's tmp_path: its parent is private to root, and nobody must read the file.
    directory = tempfile.TemporaryDirectory(prefix="dockdns-user-")
    os.chmod(directory.name, 0o755)
    hosts = os.path.join(directory.name, "hosts")
    with open(hosts, "w") as handle:
        handle.write("10.1.2.3 web1\n")
    os.chmod(hosts, 0o644)
    with directory, dockdns("--hosts-file", hosts, "--user", "nobody") as daemon:
        wait_for(lambda: "running as user nobody" in daemon.log(), "the switch")
        pid = daemon.process.pid
        # Real, effective, saved and filesystem ids: all nobody's, no way back to root.
        assert _ids(pid, "Uid") == [nobody.pw_uid] * 4
        assert _ids(pid, "Gid") == [nobody.pw_gid] * 4
        assert 0 not in _ids(pid, "Groups")
        # Still serving DNS and HTTP on the ports bound as root, and still reloading.
        assert ask(daemon.host, daemon.port, "web1").answer
        assert daemon.metrics_port is not None
        assert http_get(daemon.metrics_port, "/metrics")[0] == 200
        with open(hosts, "a") as handle:
            handle.write("10.1.2.4 later\n")
        wait_for(lambda: bool(ask(daemon.host, daemon.port, "later").answer), "the new name")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in daemon.log(), "the reload")
        daemon.signal(signal.SIGTERM)
        assert daemon.process.wait(timeout=10) == 0
        assert "Traceback" not in daemon.log()


def test_json_logs_and_the_query_log(hosts_file: str) -> None:
    with dockdns("--hosts-file", hosts_file, "--log-format", "json", "--log-queries") as daemon:
        for _ in range(3):
            ask(daemon.host, daemon.port, "web1")  # the first builds, the rest are memo hits
        ask(daemon.host, daemon.port, "multi", "AAAA", tcp=True)
        daemon.signal(signal.SIGTERM)
        daemon.process.wait(timeout=10)
        entries = [json.loads(line) for line in daemon.log().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    queries = [e for e in entries if e["logger"] == "dockdns.queries"]
    assert [(q["name"], q["qtype"], q["transport"], q["rcode"], q["answers"])
            for q in queries] == [("web1", "A", "udp", "NOERROR", 1),
                                  ("multi", "AAAA", "tcp", "NOERROR", 1)]
    assert all(q["client"] == "127.0.0.1" and q["ms"] >= 0 for q in queries)


def test_no_query_log_unless_asked(hosts_file: str) -> None:
    with dockdns("--hosts-file", hosts_file) as daemon:
        ask(daemon.host, daemon.port, "web1")
        ask(daemon.host, daemon.port, "nowhere.test")
        log = daemon.log()
    assert "dockdns.queries" not in log


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_repeated_errors_are_rate_limited() -> None:
    logger = logging.getLogger("dockdns.test-rate")
    logger.propagate = False
    collect = Collect()
    logger.addHandler(collect)
    limited = RateLimitedLog(logger, interval=3600)
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        limited.warning("UDP reply to %s failed", address)
    limited.warning("another problem")
    assert collect.messages == ["UDP reply to 10.0.0.1 failed", "another problem"]
    # After the interval the next one is logged, with the count of those held back.
    now = time.monotonic()
    limited.interval = 0.0
    assert time.monotonic() >= now
    limited.warning("UDP reply to %s failed", "10.0.0.4")
    assert collect.messages[-1] == "UDP reply to 10.0.0.4 failed (and 2 more like it)"
    logger.removeHandler(collect)
