"""The /metrics exposition built from the live counters at scrape time: queries by type, rcode
and source, memo hits in the lowest duration bucket, registry names per source, and the upstream,
cache and Docker parts once attached. Parsed back with prometheus-client's own parser."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from discovery.registry.model import Record, SourcePart
from discovery.registry.registry import Registry
from resolver.ops.metrics import Metrics, names_per_source
from resolver.ops.stats import SOURCE_FORWARD, SOURCE_LOCAL, DurationHistogram, QueryStats
from tests.support.standins import Cache, Upstreams


@dataclass
class Engine:
    engine: str
    events: int = 0
    connected: bool = False
    last_sync: float | None = None


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.exposition("")
    assert content_type.startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def setup() -> tuple[Metrics, QueryStats, DurationHistogram, Registry]:
    registry = Registry()
    registry.update("hosts", SourcePart(records=(
        Record(names=("a", "b"), ipv4=("10.0.0.1",), source="hosts"),)))
    registry.update("docker", SourcePart(records=(
        Record(names=("web",), ipv4=("10.0.0.2",), network="appnet", source="docker"),)))
    stats, durations = QueryStats(), DurationHistogram()
    return Metrics(stats, durations, lambda: registry.snapshot), stats, durations, registry


def test_queries_durations_and_names() -> None:
    metrics, stats, durations, registry = setup()
    stats.count(1, 0, SOURCE_LOCAL)
    stats.count(28, 3, SOURCE_FORWARD)
    stats.counts[stats.memo_slot(stats.slot(1, 0, SOURCE_LOCAL))] += 4
    stats.dropped = 2
    durations.observe(0.002)
    found = samples(metrics)
    local_a = (("qtype", "A"), ("rcode", "NOERROR"), ("source", "local"))
    assert found[("dockdns_queries_total", local_a)] == 5
    assert found[("dockdns_queries_total", (("qtype", "AAAA"), ("rcode", "NXDOMAIN"),
                                            ("source", "forward")))] == 1
    assert found[("dockdns_memo_hits_total", ())] == 4
    assert found[("dockdns_dropped_queries_total", ())] == 2
    # Memo hits sit in the lowest bucket; the full-path answer in the 2.5 ms one.
    assert found[("dockdns_query_duration_seconds_bucket", (("le", "0.0001"),))] == 4
    assert found[("dockdns_query_duration_seconds_bucket", (("le", "0.0025"),))] == 5
    assert found[("dockdns_query_duration_seconds_count", ())] == 5
    assert found[("dockdns_registry_names", (("source", "hosts"),))] == 2
    assert found[("dockdns_registry_names", (("source", "docker"),))] == 1
    # No upstream, cache or Docker series until those parts attach themselves.
    assert not any(name.startswith(("dockdns_upstream", "dockdns_cache", "dockdns_docker"))
                   for name, _ in found)
    # The names count follows the registry's next generation.
    registry.update("hosts", SourcePart())
    assert ("dockdns_registry_names", (("source", "hosts"),)) not in samples(metrics)
    assert names_per_source(registry.snapshot) == {"docker": 1}


def test_attached_parts() -> None:
    metrics, _, _, _ = setup()
    first = Upstreams({("127.0.0.1:53", "ok"): 3}, inflight=1)
    second = Upstreams({("127.0.0.1:53", "ok"): 2, ("[::1]:53", "timeout"): 1}, inflight=2)
    metrics.collector.attach_upstreams(first)
    metrics.collector.attach_upstreams(second)
    metrics.collector.attach_cache(Cache(entries=7, hits=5, misses=2))
    metrics.collector.attach_docker(Engine("unix:///a.sock", events=9, connected=True,
                                           last_sync=1700000000.0))
    metrics.collector.attach_docker(Engine("unix:///b.sock"))
    found = samples(metrics)
    assert found[("dockdns_upstream_requests_total", (("outcome", "ok"),
                                                      ("upstream", "127.0.0.1:53")))] == 5
    assert found[("dockdns_upstream_inflight", ())] == 3
    assert found[("dockdns_cache_entries", ())] == 7
    assert found[("dockdns_cache_hits_total", ())] == 5
    assert found[("dockdns_docker_events_total", (("engine", "unix:///a.sock"),))] == 9
    assert found[("dockdns_docker_connected", (("engine", "unix:///b.sock"),))] == 0
    assert found[("dockdns_last_sync_timestamp_seconds",
                  (("engine", "unix:///a.sock"),))] == 1700000000.0
    assert ("dockdns_last_sync_timestamp_seconds", (("engine", "unix:///b.sock"),)) not in found


def test_openmetrics_when_asked() -> None:
    metrics, _, _, _ = setup()
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")
