"""The Docker source's setup: one ``DockerEngine`` per engine, made from the discovery
settings."""

from __future__ import annotations

from discovery.docker.source import DockerSource, default_hosts
from discovery.registry.registry import Registry
from discovery.registry.source import (
    LOAD_TIMEOUT,
    DiscoverySettings,
    LoadError,
    Source,
    run_until_settled,
)


class DockerEngine:
    """One Docker engine (discovery/docker/source.py) as a ``Source``, a readiness check for
    /readyz and systemd's READY=1, and the dockdns_docker_* metrics."""

    def __init__(self, settings: DiscoverySettings, registry: Registry, host: str) -> None:
        self.source = DockerSource(registry, host, settings.include_unhealthy, settings.compat)
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

    def reconfigure(self, settings: DiscoverySettings) -> None:
        self.source.set_include_unhealthy(settings.include_unhealthy, settings.compat)

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


def setup(settings: DiscoverySettings, registry: Registry) -> list[Source]:
    if not settings.docker:
        return []
    hosts = dict.fromkeys(settings.docker_hosts or default_hosts())
    return [DockerEngine(settings, registry, host) for host in hosts]
