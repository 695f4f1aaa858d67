"""The registry's sources, made from the config in one place for both ``serve`` and ``check``:
each source's own ``setup`` (discovery/<source>/setup.py) in turn, from the discovery slice.

A source that gates readiness also satisfies ``resolver.ops.health.Readiness``; one with metrics
satisfies ``resolver.ops.metrics.DockerMetrics``; the daemon attaches both when it finds them
(``readiness()``, ``docker_metrics()`` below). To add a source, add its ``setup`` to ``SETUPS``.
"""

from __future__ import annotations

from collections.abc import Callable

from discovery.docker import setup as docker_setup
from discovery.hosts import setup as hosts_setup
from discovery.registry.registry import Registry
from discovery.registry.source import DiscoverySettings, Source
from discovery.static import setup as static_setup
from discovery.static.setup import StaticRecords
from discovery.swarm import setup as swarm_setup
from resolver.ops.health import Readiness
from resolver.ops.metrics import DockerMetrics

SourceSetup = Callable[[DiscoverySettings, Registry], list[Source]]

SETUPS: list[SourceSetup] = [hosts_setup.setup, docker_setup.setup, swarm_setup.setup,
                             static_setup.setup]


def build_sources(settings: DiscoverySettings, registry: Registry) -> list[Source]:
    return [source for setup in SETUPS for source in setup(settings, registry)]


def readiness(sources: list[Source]) -> list[Readiness]:
    return [source for source in sources if isinstance(source, Readiness)]


def docker_metrics(sources: list[Source]) -> list[DockerMetrics]:
    return [source for source in sources if isinstance(source, DockerMetrics)]


def static_conflict(sources: list[Source]) -> str | None:
    """The first static record that conflicts with a container name, for the start-up check."""
    for source in sources:
        if isinstance(source, StaticRecords):
            problems = source.static.conflicts()
            if problems:
                return problems[0]
    return None
