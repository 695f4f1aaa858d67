"""The Swarm source's setup: a local source per distinct Docker host when both docker and swarm
are on, one for the --swarm-manager list, none with swarm off; what a failed load names; and
reconfigure changing the refresh and reconcile intervals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from discovery.registry.registry import Registry
from discovery.registry.source import DiscoverySettings, LoadError
from discovery.swarm.setup import SwarmServices, setup


def test_sources_made(tmp_path: Path) -> None:
    one, two = f"unix://{tmp_path}/one.sock", f"unix://{tmp_path}/two.sock"
    made = setup(DiscoverySettings(docker_hosts=(one, two, one), swarm_managers=(two,)),
                 Registry())
    assert [(s.name, s.what) for s in made] == [  # type: ignore[attr-defined]
        (f"swarm:{one}", f"docker engine {one}"), (f"swarm:{two}", f"docker engine {two}"),
        ("swarm:managers", f"swarm managers {two}")]
    assert setup(DiscoverySettings(swarm=False, swarm_managers=(one,)), Registry()) == []
    only_managers = setup(DiscoverySettings(docker=False, swarm_managers=(one, two)), Registry())
    assert [s.name for s in only_managers] == ["swarm:managers"]


def test_reconfigure_and_a_failed_load(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/gone.sock"
    services = SwarmServices(DiscoverySettings(), Registry(), [url], local=True)
    assert (services.source.refresh, services.source.reconcile) == (2.0, 60.0)
    services.reconfigure(DiscoverySettings(swarm_refresh=7.5, swarm_reconcile=30.0))
    assert (services.source.refresh, services.source.reconcile) == (7.5, 30.0)
    with pytest.raises(LoadError) as raised:
        asyncio.run(services.load())
    assert raised.value.what == f"docker engine {url}" and "could not be read" in str(raised.value)
