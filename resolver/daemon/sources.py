"""The registry's sources, made from the config in one place for both ``serve`` and ``check``.

A source is anything that feeds the registry. ``serve`` calls ``start()`` before it listens (what
must be there for the first query), then runs ``run()`` as a background task; ``dockdns check``
and ``dockdns registry`` call ``load()`` once and read the snapshot, with no daemon. SIGHUP calls
``reconfigure()`` with the new config.

To add a source, add a factory to ``FACTORIES``: it gets the config and the
registry and returns the sources to run (none when disabled). A source that gates readiness also
satisfies ``resolver.ops.health.Readiness``; one with metrics satisfies
``resolver.ops.metrics.DockerMetrics``; the daemon attaches both when it finds them
(``readiness()``,
``docker_metrics()`` below).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from discovery.docker.source import DockerSource, default_hosts
from discovery.hosts.source import HostsSource
from discovery.registry.registry import Registry
from discovery.swarm.source import SwarmSource
from resolver.config.settings import Config
from resolver.ops.health import Readiness
from resolver.ops.metrics import DockerMetrics

# How long `dockdns check` / `dockdns registry` wait for an engine's first listing (every source
# loads at once, so this bounds the whole command), and how long each of their engine API calls
# may take: a hung engine is reported once this has passed, not held on to.
LOAD_TIMEOUT = 10.0


class LoadError(Exception):
    """A source could not be loaded for ``check``/``registry``. ``what`` names the engine (the
    sources reading one engine fail as one: it is reported once)."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what} {reason}")
        self.what = what


async def run_until_settled(run: Coroutine[Any, Any, None], settled: asyncio.Event,
                            what: str) -> None:
    """Run a remote source until its first sync settled, then stop it; ``LoadError`` naming
    ``what`` when that takes longer than LOAD_TIMEOUT."""
    task = asyncio.get_running_loop().create_task(run)
    try:
        await asyncio.wait_for(settled.wait(), LOAD_TIMEOUT)
    except TimeoutError:
        raise LoadError(what, f"did not answer within {LOAD_TIMEOUT:.0f} s") from None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


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

    async def first_sync(self) -> None:
        """Return once the first sync was done or failed (startup waits on it, bounded)."""
        ...

    def close(self) -> None:
        """Let go of connections and threads (shutdown); ``run`` is cancelled by the daemon."""
        ...


class HostsFiles:
    """The hosts-file source (discovery/hosts/source.py) as a ``Source``."""

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

    async def first_sync(self) -> None:
        return None  # loaded in start()

    def close(self) -> None:
        return None

    @property
    def ready(self) -> bool:
        """False while a hosts file cannot be read (its last good records are served)."""
        return not self.hosts.errors

    @property
    def reason(self) -> str:
        return "; ".join(self.hosts.errors.values())


class DockerEngine:
    """One Docker engine (discovery/docker/source.py) as a ``Source``, a readiness check for
    /readyz and systemd's READY=1, and the dockdns_docker_* metrics."""

    def __init__(self, config: Config, registry: Registry, host: str) -> None:
        self.source = DockerSource(registry, host, config.include_unhealthy)
        self.name = self.source.name
        self.engine = host

    async def start(self) -> None:
        return None  # nothing remote may be waited on before the daemon listens

    async def run(self) -> None:
        await self.source.run()

    async def first_sync(self) -> None:
        await self.source.settled.wait()

    async def load(self) -> None:
        """Sync once (for `dockdns check`/`registry`): raise if the engine cannot be reached."""
        self.source.request_timeout = LOAD_TIMEOUT
        try:
            await run_until_settled(self.source.run(), self.source.settled,
                                    f"docker engine {self.engine}")
        finally:
            self.source.close()
        if not self.source.ready:
            raise LoadError(f"docker engine {self.engine}", f"unreachable: {self.source.error}")

    def reconfigure(self, config: Config) -> None:
        self.source.set_include_unhealthy(config.include_unhealthy)

    def close(self) -> None:
        self.source.close()

    @property
    def ready(self) -> bool:
        return self.source.ready and self.source.connected

    @property
    def reason(self) -> str:
        if self.source.connected and self.source.ready:
            return ""
        # /readyz shows it after the check's name, which already names the engine.
        if self.source.error:
            return f"engine unreachable: {self.source.error}"
        return "first sync with the engine not done yet"

    @property
    def events(self) -> int:
        return self.source.events_total

    @property
    def connected(self) -> bool:
        return self.source.connected

    @property
    def last_sync(self) -> float | None:
        return self.source.last_sync


SourceFactory = Callable[[Config, Registry], list[Source]]


def _hosts_files(config: Config, registry: Registry) -> list[Source]:
    # Always made, even with no files: SIGHUP may add some later.
    return [HostsFiles(config, registry)]


class SwarmServices:
    """Swarm services and tasks (discovery/swarm/source.py) from one engine, or from the
    --swarm-manager list, as a ``Source``."""

    def __init__(self, config: Config, registry: Registry, urls: list[str | None],
                 local: bool) -> None:
        self.source = SwarmSource(registry, urls, config.swarm_refresh, local=local)
        self.name = self.source.name
        # What a failed load names: the local engine (as its Docker source does), or the managers.
        self.what = (f"docker engine {urls[0] or default_hosts()[0]}" if local else
                     "swarm managers " + ", ".join(url or default_hosts()[0] for url in urls))

    async def start(self) -> None:
        return None

    async def run(self) -> None:
        await self.source.run()

    async def first_sync(self) -> None:
        await self.source.settled.wait()

    async def load(self) -> None:
        await run_until_settled(self.source.run(), self.source.settled, self.what)
        if self.source.error is not None:
            raise LoadError(self.what, f"could not be read: {self.source.error}")

    def reconfigure(self, config: Config) -> None:
        self.source.refresh = config.swarm_refresh

    def close(self) -> None:
        return None  # cancelling ``run`` stops its event thread and closes its client


def _swarm(config: Config, registry: Registry) -> list[Source]:
    if not config.swarm:
        return []
    sources: list[Source] = []
    if config.docker:
        # The local engines: services when one is a manager, and the gwbridge client mapping.
        sources = [SwarmServices(config, registry, [url], local=True)
                   for url in dict.fromkeys(config.docker_hosts or (None,))]
    if config.swarm_managers:
        sources.append(SwarmServices(config, registry, list(config.swarm_managers),
                                     local=False))
    return sources


def _docker_engines(config: Config, registry: Registry) -> list[Source]:
    if not config.docker:
        return []
    hosts = dict.fromkeys(config.docker_hosts or default_hosts())
    return [DockerEngine(config, registry, host) for host in hosts]


FACTORIES: list[SourceFactory] = [_hosts_files, _docker_engines, _swarm]


def build_sources(config: Config, registry: Registry) -> list[Source]:
    return [source for factory in FACTORIES for source in factory(config, registry)]


def readiness(sources: list[Source]) -> list[Readiness]:
    return [source for source in sources if isinstance(source, Readiness)]


def docker_metrics(sources: list[Source]) -> list[DockerMetrics]:
    return [source for source in sources if isinstance(source, DockerMetrics)]
