"""The Swarm source's setup: a ``SwarmServices`` per local engine (services when it is a
manager, and the gwbridge client mapping), and one for the --swarm-manager list."""

from __future__ import annotations

from discovery.docker.source import default_hosts
from discovery.registry.registry import Registry
from discovery.registry.source import DiscoverySettings, LoadError, Source, run_until_settled
from discovery.swarm.source import SwarmSource


class SwarmServices:
    """Swarm services and tasks (discovery/swarm/source.py) from one engine, or from the
    --swarm-manager list, as a ``Source``."""

    def __init__(self, settings: DiscoverySettings, registry: Registry, urls: list[str | None],
                 local: bool) -> None:
        self.source = SwarmSource(registry, urls, settings.swarm_refresh, local=local,
                                  reconcile=settings.swarm_reconcile)
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

    def reconfigure(self, settings: DiscoverySettings) -> None:
        self.source.refresh = settings.swarm_refresh
        self.source.reconcile = settings.swarm_reconcile

    def close(self) -> None:
        return None  # cancelling ``run`` stops its event thread and closes its client


def setup(settings: DiscoverySettings, registry: Registry) -> list[Source]:
    if not settings.swarm:
        return []
    sources: list[Source] = []
    if settings.docker:
        # The local engines: services when one is a manager, and the gwbridge client mapping.
        sources = [SwarmServices(settings, registry, [url], local=True)
                   for url in dict.fromkeys(settings.docker_hosts or (None,))]
    if settings.swarm_managers:
        sources.append(SwarmServices(settings, registry, list(settings.swarm_managers),
                                     local=False))
    return sources
