"""Prometheus metrics, all read when the endpoint is scraped and none kept per query.

The query path only bumps plain integers (``resolver/ops/stats.py``); this module turns them into
metric families in ``collect()``. Parts that other modules own (the forwarder, the cache, the
Docker source) are read through the small protocols below: an object with a few plain attributes,
attached once with ``attach_*`` when that part starts. Until something is attached its metrics are
simply absent from the exposition, which Prometheus handles as "no data".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from discovery.registry.model import Snapshot
from resolver.dns.codes import qtype_name, rcode_name
from resolver.ops import buildinfo
from resolver.ops.stats import DurationHistogram, QueryStats

# --- what the other parts expose (read at scrape time, from the event loop) ------------------


class UpstreamMetrics(Protocol):
    """The forwarder: requests sent per upstream and how each ended, and how many are pending."""

    @property
    def requests(self) -> Mapping[tuple[str, str], int]:
        """(upstream "ADDR:PORT", outcome e.g. "ok", "timeout", "error", "truncated") -> count."""
        ...

    @property
    def inflight(self) -> int: ...

    @property
    def rejected_replies(self) -> Mapping[str, int]:
        """Replies dropped before use, by reason (``unknown_id``, ``wrong_source``,
        ``wrong_question``, ``malformed``, ``unreadable``)."""
        ...

    @property
    def events(self) -> Mapping[str, int]:
        """What the forwarder did instead of waiting: "fast_failure" (every upstream of the
        name down), "jostled", "overflow", "prefetch" -> count."""
        ...

    @property
    def down(self) -> int:
        """Upstreams marked down (or found to loop) now."""
        ...


class CacheMetrics(Protocol):
    """The forwarder's answer cache."""

    @property
    def entries(self) -> int: ...

    @property
    def hits(self) -> int: ...

    @property
    def misses(self) -> int: ...


class SourceMetrics(Protocol):
    """The supervisor of the sources' run loops (resolver/daemon/supervise.py)."""

    @property
    def restarts(self) -> Mapping[str, int]:
        """Source name -> times its run loop failed and was started again."""
        ...


class MemoMetrics(Protocol):
    """The memos of ready replies (resolver/answer/views.py's table of views)."""

    def memo_usage(self) -> tuple[int, int]:
        """(entries, bytes as counted against the memos' bound), every view together."""
        ...


@runtime_checkable
class DockerMetrics(Protocol):
    """One Docker engine the Docker source watches."""

    @property
    def engine(self) -> str:
        """The engine's URL, the ``engine`` label."""
        ...

    @property
    def events(self) -> int:
        """Engine events received so far."""
        ...

    @property
    def connected(self) -> bool: ...

    @property
    def last_sync(self) -> float | None:
        """Unix time of the last completed full sync with the engine; None before the first."""
        ...


# --- label values --------------------------------------------------------------------------


def names_per_source(snapshot: Snapshot) -> dict[str, int]:
    """Distinct (network, name) pairs in the registry per source kind ("hosts", "docker", ...).
    The registry keeps these counts as each change applies (``Snapshot.source_names``): a
    scrape of a registry of 100,000 names walks none of them."""
    return dict(snapshot.source_names)


class DockdnsCollector(Collector):
    """Every ``dockdns_*`` metric, built from the live objects at each scrape."""

    def __init__(self, stats: QueryStats, durations: DurationHistogram,
                 snapshot: Callable[[], Snapshot]) -> None:
        self.stats = stats
        self.durations = durations
        self.snapshot = snapshot
        self.upstreams: list[UpstreamMetrics] = []
        self.caches: list[CacheMetrics] = []
        self.engines: list[DockerMetrics] = []
        self.sources: list[SourceMetrics] = []
        # Each a way to the current table of views: the handler makes a new one when networks
        # change, so the table itself is looked up at every scrape.
        self.memos: list[Callable[[], MemoMetrics]] = []

    # The hook points: each part attaches itself once it exists.
    def attach_upstreams(self, upstreams: UpstreamMetrics) -> None:
        self.upstreams.append(upstreams)

    def attach_cache(self, cache: CacheMetrics) -> None:
        self.caches.append(cache)

    def attach_docker(self, engine: DockerMetrics) -> None:
        self.engines.append(engine)

    def attach_sources(self, sources: SourceMetrics) -> None:
        self.sources.append(sources)

    def attach_memo(self, memo: Callable[[], MemoMetrics]) -> None:
        self.memos.append(memo)

    def collect(self) -> Iterable[Metric]:
        yield from self._queries()
        yield self._durations()
        yield self._registry_names()
        yield from self._upstream_metrics()
        yield from self._cache_metrics()
        yield from self._docker_metrics()
        yield from self._source_metrics()
        yield from self._memo_metrics()
        yield self._build_info()

    def _build_info(self) -> Metric:
        build = buildinfo.current()
        info = GaugeMetricFamily("dockdns_build_info", "Always 1: whether the per-query modules "
                                 "run compiled (setup.py) or as pure Python, and how many are "
                                 "compiled and how many of those are older than their source",
                                 labels=["build", "compiled_modules", "stale_modules"])
        info.add_metric([build.kind, str(len(build.compiled)), str(len(build.stale))], 1)
        return info

    def _memo_metrics(self) -> Iterator[Metric]:
        if not self.memos:
            return
        entries = used = 0
        for memo in self.memos:
            held, counted = memo().memo_usage()
            entries += held
            used += counted
        yield GaugeMetricFamily("dockdns_memo_entries", "Ready replies held in the memos of "
                                "every view, UDP and TCP", value=entries)
        yield GaugeMetricFamily("dockdns_memo_bytes", "Bytes the memos count against their "
                                "bound: keys, replies and a fixed overhead per entry",
                                value=used)

    def _source_metrics(self) -> Iterator[Metric]:
        if not self.sources:
            return
        restarts = CounterMetricFamily("dockdns_source_restarts", "Times a source's run loop "
                                       "failed and was started again", labels=["source"])
        for part in self.sources:
            for source, count in sorted(part.restarts.items()):
                restarts.add_metric([source], count)
        yield restarts

    def _queries(self) -> Iterator[Metric]:
        queries = CounterMetricFamily(
            "dockdns_queries", "Queries answered, by question type, response code and where the "
            "answer came from (local registry, cache, forward, error)",
            labels=["qtype", "rcode", "source"])
        for (qtype, rcode, source), count in sorted(self.stats.totals().items()):
            queries.add_metric([qtype_name(qtype), rcode_name(rcode), source], count)
        yield queries
        yield CounterMetricFamily("dockdns_memo_hits", "Queries answered from the memo of "
                                  "ready replies (also counted in dockdns_queries_total)",
                                  value=self.stats.memo_hits())
        yield CounterMetricFamily("dockdns_dropped_queries", "Packets that got no reply (not a "
                                  "query, or too broken to answer)", value=self.stats.dropped)
        yield CounterMetricFamily("dockdns_internal_errors", "Queries answered SERVFAIL because "
                                  "of an internal error", value=self.stats.internal_errors)

    def _durations(self) -> Metric:
        durations = self.durations
        memo_hits = self.stats.memo_hits()
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for index, bound in enumerate(durations.bounds):
            cumulative += durations.buckets[index]
            if index == 0:
                cumulative += memo_hits  # answered synchronously, in microseconds
            buckets.append((_bound_text(bound), cumulative))
        cumulative += durations.buckets[-1]
        buckets.append(("+Inf", cumulative))
        return HistogramMetricFamily(
            "dockdns_query_duration_seconds", "Time from a query's arrival to its reply. Memo "
            "hits are counted in the lowest bucket and add nothing to the sum",
            buckets=buckets, sum_value=durations.sum)

    def _registry_names(self) -> Metric:
        counts = names_per_source(self.snapshot())
        names = GaugeMetricFamily("dockdns_registry_names", "Names in the registry (per network "
                                  "they are on), by source", labels=["source"])
        for source, count in sorted(counts.items()):
            names.add_metric([source], count)
        return names

    def _upstream_metrics(self) -> Iterator[Metric]:
        if not self.upstreams:
            return
        requests = CounterMetricFamily(
            "dockdns_upstream_requests", "Requests sent upstream, by upstream and outcome",
            labels=["upstream", "outcome"])
        totals: dict[tuple[str, str], int] = {}
        for part in self.upstreams:
            for key, count in part.requests.items():
                totals[key] = totals.get(key, 0) + count
        for (upstream, outcome), count in sorted(totals.items()):
            requests.add_metric([upstream, outcome], count)
        yield requests
        rejected = CounterMetricFamily(
            "dockdns_upstream_rejected_replies", "Upstream replies dropped unused (forged, late, "
            "from the wrong address, for another question, or unreadable), by reason",
            labels=["reason"])
        reasons: dict[str, int] = {}
        for part in self.upstreams:
            for reason, count in part.rejected_replies.items():
                reasons[reason] = reasons.get(reason, 0) + count
        for reason, count in sorted(reasons.items()):
            rejected.add_metric([reason], count)
        yield rejected
        yield GaugeMetricFamily("dockdns_upstream_inflight", "Requests waiting on an upstream",
                                value=sum(part.inflight for part in self.upstreams))
        yield GaugeMetricFamily("dockdns_upstream_down", "Upstreams skipped now: down (silent "
                                "or unreachable, probed in the background) or a forwarding loop",
                                value=sum(part.down for part in self.upstreams))
        events = CounterMetricFamily(
            "dockdns_forward_events", "Questions answered without waiting on upstreams, by why "
            "(fast_failure: every upstream down; jostled; overflow: no slot), and background "
            "prefetches", labels=["event"])
        counted: dict[str, int] = {}
        for part in self.upstreams:
            for event, count in part.events.items():
                counted[event] = counted.get(event, 0) + count
        for event, count in sorted(counted.items()):
            events.add_metric([event], count)
        yield events

    def _cache_metrics(self) -> Iterator[Metric]:
        if not self.caches:
            return
        yield GaugeMetricFamily("dockdns_cache_entries", "Answers in the cache",
                                value=sum(cache.entries for cache in self.caches))
        yield CounterMetricFamily("dockdns_cache_hits", "Cache lookups that found an answer",
                                  value=sum(cache.hits for cache in self.caches))
        yield CounterMetricFamily("dockdns_cache_misses", "Cache lookups that found nothing",
                                  value=sum(cache.misses for cache in self.caches))

    def _docker_metrics(self) -> Iterator[Metric]:
        if not self.engines:
            return
        events = CounterMetricFamily("dockdns_docker_events", "Docker engine events received",
                                     labels=["engine"])
        connected = GaugeMetricFamily("dockdns_docker_connected", "1 while the engine's event "
                                      "stream is connected", labels=["engine"])
        last_sync = GaugeMetricFamily("dockdns_last_sync_timestamp_seconds", "Unix time of the "
                                      "last full sync with the engine", labels=["engine"])
        for engine in self.engines:
            events.add_metric([engine.engine], engine.events)
            connected.add_metric([engine.engine], 1 if engine.connected else 0)
            if engine.last_sync is not None:
                last_sync.add_metric([engine.engine], engine.last_sync)
        yield events
        yield connected
        yield last_sync


def _bound_text(bound: float) -> str:
    return repr(bound) if bound != int(bound) else f"{bound:.1f}"


class Metrics:
    """The registry the endpoint exposes: dockdns' own metrics plus the process's."""

    def __init__(self, stats: QueryStats, durations: DurationHistogram,
                 snapshot: Callable[[], Snapshot]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = DockdnsCollector(stats, durations, snapshot)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The scrape body in the format the scraper asked for, and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
