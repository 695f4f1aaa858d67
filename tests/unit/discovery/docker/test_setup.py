"""The Docker source's setup: one engine per distinct host (DOCKER_HOST by default), none when
docker is off; the engine's readiness and metrics read the source's state; reconfigure switches
health filtering; load() against a missing engine raises a LoadError naming it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from discovery.docker.setup import DockerEngine, setup
from discovery.registry.registry import Registry
from discovery.registry.source import DiscoverySettings, LoadError


def test_one_engine_per_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = f"unix://{tmp_path}/one.sock", f"unix://{tmp_path}/two.sock"
    engines = setup(DiscoverySettings(docker_hosts=(one, two, one)), Registry())
    assert [e.name for e in engines] == [f"docker:{one}", f"docker:{two}"]
    assert setup(DiscoverySettings(docker=False, docker_hosts=(one,)), Registry()) == []
    monkeypatch.setenv("DOCKER_HOST", two)
    (engine,) = setup(DiscoverySettings(), Registry())
    assert isinstance(engine, DockerEngine) and engine.engine == two


def test_state_and_reconfigure(tmp_path: Path) -> None:
    engine = DockerEngine(DiscoverySettings(), Registry(), f"unix://{tmp_path}/x.sock")
    assert not engine.ready and engine.reason == "first sync with the engine not done yet"
    engine.source.error = "connection refused"
    assert engine.reason == "engine unreachable: connection refused"
    engine.source.ready = engine.source.connected = True
    engine.source.events_total = 4
    assert engine.ready and engine.reason == "" and engine.events == 4 and engine.connected
    engine.reconfigure(DiscoverySettings(include_unhealthy=True))
    assert engine.source.include_unhealthy


def test_load_of_a_missing_engine(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/gone.sock"
    engine = DockerEngine(DiscoverySettings(), Registry(), url)
    with pytest.raises(LoadError) as raised:
        asyncio.run(engine.load())
    assert raised.value.what == f"docker engine {url}" and "unreachable" in str(raised.value)
