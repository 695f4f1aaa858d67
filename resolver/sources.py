"""The registry's sources, made from the config in one place for both ``serve`` and ``check``.

A source is anything that feeds the registry. ``serve`` calls ``start()`` before it listens (what
must be there for the first query), then runs ``run()`` as a background task; ``dockdns check``
and ``dockdns registry`` call ``load()`` once and read the snapshot, with no daemon. SIGHUP calls
``reconfigure()`` with the new config.

To add a source (the Docker source), add a factory to ``FACTORIES``: it gets the config and the
registry and returns the sources to run (none when disabled). A source that gates readiness also
satisfies ``resolver.health.Readiness``; one with metrics satisfies
``resolver.metrics.DockerMetrics``; the daemon attaches both when it finds them (``readiness()``,
``docker_metrics()`` below).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from discovery.hosts import HostsSource
from discovery.registry import Registry
from resolver.config import Config
from resolver.health import Readiness
from resolver.metrics import DockerMetrics


class Source(Protocol):
    @property
    def name(self) -> str: ...

    async def start(self) -> None:
        """What must be loaded before the daemon listens. Must not wait on anything remote."""
        ...

    async def run(self) -> None:
        """Keep the registry current until cancelled (a background task of the daemon)."""
        ...

    async def load(self) -> None:
        """One complete load, for the commands that run without a daemon; raises on failure."""
        ...

    def reconfigure(self, config: Config) -> None:
        """Apply a re-read config (SIGHUP)."""
        ...


class HostsFiles:
    """The hosts-file source (discovery/hosts.py) as a ``Source``."""

    name = "hosts"

    def __init__(self, config: Config, registry: Registry) -> None:
        self.paths = list(config.hosts_files)
        self.hosts = HostsSource(registry, self.paths)

    async def start(self) -> None:
        self.hosts.load()

    async def run(self) -> None:
        await self.hosts.watch()

    async def load(self) -> None:
        self.hosts.load()

    def reconfigure(self, config: Config) -> None:
        if list(config.hosts_files) != self.paths:
            self.paths = list(config.hosts_files)
            self.hosts.set_paths(self.paths)


SourceFactory = Callable[[Config, Registry], list[Source]]


def _hosts_files(config: Config, registry: Registry) -> list[Source]:
    # Always made, even with no files: SIGHUP may add some later.
    return [HostsFiles(config, registry)]


# The Docker source adds its factory here (it returns [] when config.docker is false).
FACTORIES: list[SourceFactory] = [_hosts_files]


def build_sources(config: Config, registry: Registry) -> list[Source]:
    return [source for factory in FACTORIES for source in factory(config, registry)]


def readiness(sources: list[Source]) -> list[Readiness]:
    return [source for source in sources if isinstance(source, Readiness)]


def docker_metrics(sources: list[Source]) -> list[DockerMetrics]:
    return [source for source in sources if isinstance(source, DockerMetrics)]
