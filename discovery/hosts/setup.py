"""The hosts-file source's setup: made from the discovery settings, as a ``Source``."""

from __future__ import annotations

from discovery.hosts.source import HostsSource
from discovery.registry.registry import Registry
from discovery.registry.source import DiscoverySettings, Source


class HostsFiles:
    """The hosts-file source (discovery/hosts/source.py) as a ``Source``."""

    name = "hosts"

    def __init__(self, settings: DiscoverySettings, registry: Registry) -> None:
        self.paths = list(settings.hosts_files)
        self.hosts = HostsSource(registry, self.paths)

    async def start(self) -> None:
        self.hosts.load()

    async def run(self) -> None:
        await self.hosts.watch()

    async def load(self) -> None:
        self.hosts.load()

    def reconfigure(self, settings: DiscoverySettings) -> None:
        if list(settings.hosts_files) != self.paths:
            self.paths = list(settings.hosts_files)
            self.hosts.set_paths(self.paths)

    @property
    def ready(self) -> bool:
        """False while a hosts file cannot be read (its last good records are served)."""
        return not self.hosts.errors

    @property
    def reason(self) -> str:
        return "; ".join(self.hosts.errors.values())

    async def first_sync(self) -> None:
        return None  # loaded in start()

    def close(self) -> None:
        return None


def setup(settings: DiscoverySettings, registry: Registry) -> list[Source]:
    # Always made, even with no files: SIGHUP may add some later.
    return [HostsFiles(settings, registry)]
