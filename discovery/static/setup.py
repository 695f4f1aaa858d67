"""The static records' setup (``records`` / ``--record``): one ``StaticRecords`` source, always
made, since a SIGHUP may add records later."""

from __future__ import annotations

import asyncio

from discovery.registry.registry import Registry
from discovery.registry.source import DiscoverySettings, Source
from discovery.static.source import StaticSource


class StaticRecords:
    """The ``records`` setting (discovery/static/) as a ``Source``: loaded at start, replaced on
    SIGHUP unless a new record conflicts with a container name."""

    name = "static"

    def __init__(self, settings: DiscoverySettings, registry: Registry) -> None:
        self.static = StaticSource(registry, settings.records)

    async def start(self) -> None:
        self.static.load()

    async def run(self) -> None:
        # Nothing to follow between reloads (SIGHUP reconfigures); a run loop that returned would
        # count as a failed source to the supervisor.
        await asyncio.get_running_loop().create_future()

    async def load(self) -> None:
        self.static.load()

    def reconfigure(self, settings: DiscoverySettings) -> None:
        self.static.replace(settings.records)

    async def first_sync(self) -> None:
        return None

    def close(self) -> None:
        return None


def setup(settings: DiscoverySettings, registry: Registry) -> list[Source]:
    return [StaticRecords(settings, registry)]
