"""Which sources the discovery settings make (hosts always; one Docker engine per host when
docker is on; a Swarm source per local engine when both are on, and one for the manager list),
and which of them gate readiness and report Docker metrics. Making them connects nowhere: the
engines named here are sockets that do not exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from discovery.docker.setup import DockerEngine
from discovery.hosts.setup import HostsFiles
from discovery.registry.registry import Registry
from discovery.registry.source import DiscoverySettings
from discovery.static.setup import StaticRecords
from discovery.swarm.setup import SwarmServices
from resolver.daemon.sources import build_sources, docker_metrics, readiness


@pytest.fixture
def engines(tmp_path: Path) -> tuple[str, str]:
    # Nothing listens there: constructing a source that connected would fail or hang.
    return f"unix://{tmp_path}/one.sock", f"unix://{tmp_path}/two.sock"


def kinds(settings: DiscoverySettings) -> list[tuple[str, str]]:
    return [(type(s).__name__, s.name) for s in build_sources(settings, Registry())]


def test_everything_off_leaves_the_hosts_and_static_sources() -> None:
    sources = build_sources(DiscoverySettings(docker=False, swarm=False), Registry())
    assert [type(s) for s in sources] == [HostsFiles, StaticRecords]
    # The hosts source gates readiness while a file cannot be read; no Docker metrics.
    assert readiness(sources) == sources[:1] and docker_metrics(sources) == []


def test_docker_and_swarm_per_engine(engines: tuple[str, str]) -> None:
    one, two = engines
    settings = DiscoverySettings(docker_hosts=(one, two, one), hosts_files=("/etc/hosts",))
    assert kinds(settings) == [
        ("HostsFiles", "hosts"), ("DockerEngine", f"docker:{one}"),
        ("DockerEngine", f"docker:{two}"),
        ("SwarmServices", f"swarm:{one}"), ("SwarmServices", f"swarm:{two}"),
        ("StaticRecords", "static")]


def test_docker_without_swarm(engines: tuple[str, str]) -> None:
    settings = DiscoverySettings(docker_hosts=(engines[0],), swarm=False)
    assert kinds(settings) == [("HostsFiles", "hosts"), ("DockerEngine", f"docker:{engines[0]}"),
                               ("StaticRecords", "static")]


def test_swarm_managers_without_local_docker(engines: tuple[str, str]) -> None:
    settings = DiscoverySettings(docker=False, swarm_managers=engines)
    sources = build_sources(settings, Registry())
    assert kinds(settings) == [("HostsFiles", "hosts"), ("SwarmServices", "swarm:managers"),
                               ("StaticRecords", "static")]
    managers = sources[1]
    assert isinstance(managers, SwarmServices) and managers.source.urls == list(engines)
    assert managers.what == f"swarm managers {engines[0]}, {engines[1]}"
    # With docker on too, the manager list comes after the local engine's Swarm source.
    both = kinds(DiscoverySettings(docker_hosts=(engines[0],), swarm_managers=engines))
    assert both[-3:-1] == [("SwarmServices", f"swarm:{engines[0]}"),
                           ("SwarmServices", "swarm:managers")]


def test_default_engine_follows_docker_host(engines: tuple[str, str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", engines[1])
    assert kinds(DiscoverySettings(swarm=False))[1] == ("DockerEngine", f"docker:{engines[1]}")


def test_readiness_and_metrics_are_the_docker_engines(engines: tuple[str, str]) -> None:
    sources = build_sources(DiscoverySettings(docker_hosts=engines,
                                              swarm_managers=(engines[0],)), Registry())
    docker = [s for s in sources if isinstance(s, DockerEngine)]
    assert len(docker) == 2 and len(sources) == 7
    assert readiness(sources) == [sources[0], *docker] and docker_metrics(sources) == docker
    for engine, host in zip(docker, engines, strict=True):
        # Not connected yet, and saying why: nothing was attempted while constructing.
        assert not engine.ready and engine.reason == "first sync with the engine not done yet"
        assert engine.engine == host and engine.events == 0 and engine.last_sync is None
        assert not engine.connected
