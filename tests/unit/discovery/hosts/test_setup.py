"""The hosts source's setup: always made (SIGHUP may add files), loaded in start() so names
answer before the daemon listens, reconfigured to new paths, not ready while a file is unread,
and loaded for ``dockdns check`` with every record named PATH:LINE."""

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
    assert names(registry) == set() and source.ready
    # Small new files are read at once by the reload itself.
    source.reconfigure(DiscoverySettings(hosts_files=(str(first),)))
    assert names(registry) == {"alpha"} and source.ready
    source.reconfigure(DiscoverySettings(hosts_files=(str(first), str(second))))
    assert names(registry) == {"alpha", "beta"}
    # Loading again (what check does) reads the same files, naming each record's line.
    asyncio.run(source.load())
    assert names(registry) == {"alpha", "beta"}
    (beta,) = registry.snapshot.global_names["beta"].records
    assert beta.origin == f"{second}:1"


def test_start_loads_before_listening(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("10.0.0.3 gamma\n")
    registry = Registry()
    (source,) = setup(DiscoverySettings(hosts_files=(str(path),)), registry)
    assert isinstance(source, HostsFiles)
    assert not source.ready and source.reason == f"loading {path}"
    asyncio.run(source.start())
    assert names(registry) == {"gamma"} and source.ready and source.reason == ""
    asyncio.run(source.first_sync())  # nothing to wait for
