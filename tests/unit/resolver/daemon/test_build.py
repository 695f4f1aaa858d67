"""The daemon's components made from one config: the sources the discovery slice asks for, the
readiness checks (Docker engines, the sidecar), the metrics' attached parts, the query log and
rate limiter only when asked, and systemd's notifier for worker 0 only. Nothing connects."""

from __future__ import annotations

from pathlib import Path

import pytest

from discovery.registry.model import Record, SourcePart
from resolver.config.settings import build as build_config
from resolver.daemon.build import answering, build
from resolver.ops.querylog import log_query
from resolver.serve.ratelimit import RateLimiter
from tests.support.notify_socket import NotifySocket


@pytest.fixture
def engine(tmp_path: Path) -> str:
    return f"unix://{tmp_path}/no-engine.sock"  # nothing listens: a connection would fail


def test_components(engine: str) -> None:
    config = build_config({"docker_hosts": [engine], "swarm": "false", "log_queries": "true",
                           "rate_limit": "50", "as_container": "web", "tcp_max": "7",
                           "upstreams": ["127.0.0.1:5301"]}, environ={})
    parts = build(config)
    assert [type(s).__name__ for s in parts.sources] == ["HostsFiles", "DockerEngine",
                                                         "StaticRecords"]
    assert parts.handler.query_log is log_query
    assert isinstance(parts.limiter, RateLimiter) and parts.limiter.rate == 50
    assert parts.tcp_state.max_connections == 7 and parts.tcp_state.handler is parts.handler
    checks = parts.health.checks
    # Each source that gates readiness, then the supervisor's check of every run loop.
    assert [type(c).__name__ for c in checks] == ["HostsFiles", "DockerEngine", *(
        ["SupervisedCheck"] * 3), "SidecarCheck"]
    attached: list[object] = list(parts.metrics.collector.engines)
    assert attached == [parts.sources[1]]
    assert parts.metrics.collector.upstreams == [parts.forwarder]
    assert len(parts.metrics.collector.caches) == 1
    assert parts.handler.forwarder is parts.forwarder


def test_defaults_ask_for_nothing_extra(engine: str) -> None:
    config = build_config({"docker": "false", "swarm": "false"}, environ={})
    parts = build(config)
    assert parts.handler.query_log is None and parts.limiter is None
    # Only what every daemon has: the hosts source and its supervision, the static records'.
    assert [type(c).__name__ for c in parts.health.checks] == ["HostsFiles", "SupervisedCheck",
                                                               "SupervisedCheck"]
    assert parts.metrics.collector.engines == []


def test_only_worker_zero_speaks_to_systemd(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    listener = NotifySocket(tmp_path / "notify", timeout=5)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", listener.path)
        config = build_config({"docker": "false", "swarm": "false"}, environ={})
        first, second = build(config, worker=0), build(config, worker=1)
        assert first.notifier.enabled and not second.notifier.enabled
        first.notifier.close()
    finally:
        listener.sock.close()


def test_answering_is_what_check_runs() -> None:
    config = build_config({"ttl": "42", "upstreams": ["127.0.0.1:5301"]}, environ={})
    registry, forwarder, handler = answering(config)
    assert handler.forwarder is forwarder and handler.snapshot is registry.snapshot
    assert handler.settings.ttl == 42
    assert forwarder.settings.upstreams == config.upstreams
    # The handler follows the registry it was made with.
    registry.update("hosts", SourcePart(records=(Record(names=("x",), ipv4=("10.0.0.1",)),)))
    assert handler.snapshot is registry.snapshot and "x" in handler.snapshot.global_names
