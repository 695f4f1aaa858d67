"""The hosts source's setup: always made (SIGHUP may add files), loaded in start() so names
answer before the daemon listens, and reconfigured to new paths."""

from __future__ import annotations

import asyncio
from pathlib import Path

from discovery.hosts.setup import HostsFiles, setup
from discovery.registry.registry import Registry
from discovery.registry.source import DiscoverySettings


def names(registry: Registry) -> set[str]:
    return set(registry.snapshot.global_names)


def test_made_loaded_and_reconfigured(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.write_text("10.0.0.1 alpha\n")
    second.write_text("10.0.0.2 beta\n")
    registry = Registry()
    (source,) = setup(DiscoverySettings(docker=False, swarm=False), registry)
    assert isinstance(source, HostsFiles) and source.name == "hosts"
    asyncio.run(source.start())
    assert names(registry) == set()
    source.reconfigure(DiscoverySettings(hosts_files=(str(first),)))
    assert names(registry) == {"alpha"}
    source.reconfigure(DiscoverySettings(hosts_files=(str(first), str(second))))
    assert names(registry) == {"alpha", "beta"}
    # Loading again (what check does) reads the same files.
    asyncio.run(source.load())
    assert names(registry) == {"alpha", "beta"}


def test_start_loads_before_listening(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("10.0.0.3 gamma\n")
    registry = Registry()
    (source,) = setup(DiscoverySettings(hosts_files=(str(path),)), registry)
    asyncio.run(source.start())
    assert names(registry) == {"gamma"}
    asyncio.run(source.first_sync())  # nothing to wait for
