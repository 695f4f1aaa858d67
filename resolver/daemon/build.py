"""The daemon's components, each made from its own slice of the config (resolver/config/
slices.py) and wired together: the registry and its sources, the forward chain, the handler in
front of it, the TCP state, the rate limiter, health, metrics and systemd's notifier."""

from __future__ import annotations

import os
from dataclasses import dataclass

from discovery.registry.registry import Registry
from discovery.registry.source import Source
from resolver.answer.handler import QueryHandler
from resolver.config import slices
from resolver.config.settings import Config
from resolver.daemon.sources import build_sources, docker_metrics, readiness
from resolver.daemon.supervise import SourceSupervisor
from resolver.forward.forwarder import CacheCounters, UpstreamForwarder
from resolver.ops.health import Health, SidecarCheck
from resolver.ops.metrics import Metrics
from resolver.ops.notify import Notifier
from resolver.ops.querylog import log_query
from resolver.serve.ratelimit import RateLimiter
from resolver.serve.tcp import TCPServerState


@dataclass
class Components:
    registry: Registry
    sources: list[Source]
    forwarder: UpstreamForwarder
    handler: QueryHandler
    tcp_state: TCPServerState
    limiter: RateLimiter | None
    health: Health
    metrics: Metrics
    notifier: Notifier
    supervisor: SourceSupervisor


def answering(config: Config) -> tuple[Registry, UpstreamForwarder, QueryHandler]:
    """What answers a query: the registry, the forward chain and the handler in front of it.
    Both ``serve`` and ``dockdns check`` run exactly these."""
    registry = Registry()
    forwarder = UpstreamForwarder(slices.forward_settings(config))
    handler = QueryHandler(registry, slices.answer_settings(config), forwarder=forwarder)
    return registry, forwarder, handler


def build(config: Config, worker: int = 0) -> Components:
    registry, forwarder, handler = answering(config)
    sources = build_sources(slices.discovery_settings(config), registry)
    if config.log_queries:
        handler.query_log = log_query
    tcp = slices.tcp_settings(config)
    tcp_state = TCPServerState(handler, tcp.idle_timeout, tcp.max_connections)
    # One limiter for every UDP address this process serves: a client's rate is its own,
    # whichever address it asks.
    limiter = RateLimiter(config.rate_limit) if config.rate_limit > 0 else None
    health = Health()
    for check in readiness(sources):
        health.add_check(check)
    # Every source's run loop is restarted when it fails, and /readyz names it meanwhile.
    supervisor = SourceSupervisor()
    for source in sources:
        health.add_check(supervisor.check(source))
    if config.as_container is not None:
        health.add_check(SidecarCheck(config.as_container,
                                      lambda: handler.views.sidecar_found))
    metrics = Metrics(handler.stats, handler.durations, lambda: registry.snapshot)
    for engine in docker_metrics(sources):
        metrics.collector.attach_docker(engine)
    metrics.collector.attach_upstreams(forwarder)
    metrics.collector.attach_sources(supervisor)
    metrics.collector.attach_cache(CacheCounters(forwarder, handler.stats))
    metrics.collector.attach_memo(lambda: handler.views)
    # systemd hears one process: worker 0 (as for the health endpoints), on behalf of the
    # supervisor systemd started when there are several.
    notifier = (Notifier.from_environment(
        main_pid=os.getppid() if config.workers > 1 else None) if worker == 0
        else Notifier(None))
    return Components(registry, sources, forwarder, handler, tcp_state, limiter, health,
                      metrics, notifier, supervisor)
