"""/metrics, /healthz and /readyz as routes: status codes follow liveness and readiness with
their reasons in the body, and /metrics honours the scraper's Accept header."""

from __future__ import annotations

from dataclasses import dataclass

from discovery.registry.registry import Registry
from resolver.ops.endpoints import routes
from resolver.ops.health import Health
from resolver.ops.metrics import Metrics
from resolver.ops.stats import DurationHistogram, QueryStats


@dataclass
class Check:
    name: str = "docker unix:///x.sock"
    ready: bool = False
    reason: str = "first sync with the engine not done yet"


def test_routes() -> None:
    registry = Registry()
    health = Health()
    table = routes(Metrics(QueryStats(), DurationHistogram(), lambda: registry.snapshot), health)
    assert set(table) == {"/metrics", "/healthz", "/readyz"}
    healthz, readyz = table["/healthz"], table["/readyz"]
    assert (healthz({}).status, healthz({}).body) == (503, b"not listening yet\n")
    health.listening = True
    check = Check()
    health.add_check(check)
    assert (healthz({}).status, healthz({}).body) == (200, b"ok\n")
    assert readyz({}).status == 503
    assert readyz({}).body == b"docker unix:///x.sock: first sync with the engine not done yet\n"
    check.ready = True
    assert (readyz({}).status, readyz({}).body) == (200, b"ready\n")
    health.stopping = True
    assert healthz({}).status == 503 and readyz({}).body == b"shutting down\n"
    plain = table["/metrics"]({})
    assert plain.status == 200 and b"dockdns_queries_total" in plain.body
    open_metrics = table["/metrics"]({"accept": "application/openmetrics-text"})
    assert open_metrics.content_type.startswith("application/openmetrics-text")
