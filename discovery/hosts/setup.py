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
        self.registry = registry
        self.hosts = HostsSource(registry, self.paths)

    async def start(self) -> None:
        # Before the daemon listens: a name in a hosts file is never forwarded, not even in the
        # seconds a million-line blocklist takes to read (Unbound and dnsmasq also read theirs
        # first). The parse runs in a thread, so the loop meanwhile serves signals and the
        # other sources' first syncs.
        await self.hosts.load()

    async def run(self) -> None:
        await self.hosts.watch()

    async def load(self) -> None:
        # ``dockdns check`` and ``dockdns registry``: one read, every record named PATH:LINE.
        self.registry.remove(self.name)
        self.hosts = HostsSource(self.registry, self.paths, numbered=True)
        await self.hosts.load()

    def reconfigure(self, settings: DiscoverySettings) -> None:
        if list(settings.hosts_files) != self.paths:
            self.paths = list(settings.hosts_files)
            self.hosts.set_paths(self.paths)

    @property
    def ready(self) -> bool:
        """False while a hosts file is not read yet, or cannot be read (its last good records
        are served meanwhile)."""
        return not self.hosts.errors and not self.hosts.loading and not self.hosts.handing

    @property
    def reason(self) -> str:
        loading = [f"loading {path}" for path in self.hosts.loading]
        if self.hosts.handing:
            loading.append(f"{self.hosts.handing} records still to be handed to the registry")
        return "; ".join([*loading, *self.hosts.errors.values()])

    async def first_sync(self) -> None:
        return None  # loaded in start()

    def close(self) -> None:
        return None


def setup(settings: DiscoverySettings, registry: Registry) -> list[Source]:
    # Always made, even with no files: SIGHUP may add some later.
    return [HostsFiles(settings, registry)]
