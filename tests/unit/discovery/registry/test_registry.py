"""The registry: parts per source merged into one snapshot changed in place, a new generation
only when a part really changed, listeners told of each change, and a source's part removed
whole."""

from __future__ import annotations

from discovery.registry.model import Record, Snapshot, SourcePart
from discovery.registry.registry import Registry

HOSTS = SourcePart(records=(Record(names=("web1",), ipv4=("10.1.2.3",), source="hosts"),))
DOCKER = SourcePart(records=(Record(names=("db",), ipv4=("10.1.2.9",), source="docker"),))


def test_update_publishes_only_changes() -> None:
    registry = Registry()
    seen: list[tuple[Snapshot, int]] = []
    registry.subscribe(lambda snapshot: seen.append((snapshot, snapshot.generation)))
    assert registry.snapshot.generation == 0 and registry.snapshot.name_count() == 0
    assert registry.update("hosts", HOSTS)
    assert registry.update("docker", DOCKER)
    # An equal part (not the same object) changes nothing: no generation, no listener call.
    assert not registry.update("hosts", SourcePart(records=HOSTS.records))
    assert [g for _, g in seen] == [1, 2] and all(s is registry.snapshot for s, _ in seen)
    assert set(registry.snapshot.global_names) == {"web1", "db"}
    assert registry.part("hosts") == HOSTS and registry.part("swarm") is None


def test_remove() -> None:
    registry = Registry()
    registry.update("hosts", HOSTS)
    registry.update("docker", DOCKER)
    before = registry.snapshot
    generation = before.generation
    registry.remove("docker")
    assert set(registry.snapshot.global_names) == {"web1"}
    assert registry.snapshot.generation == generation + 1
    registry.remove("docker")  # gone already: no new generation
    assert registry.snapshot.generation == generation + 1
    # Changed in place (within the call: readers on the loop never see half of it).
    assert registry.snapshot is before and registry.sources() == ["hosts"]


def test_change_applies_a_delta_as_a_multiset() -> None:
    from discovery.registry.model import Network

    registry = Registry()
    seen: list[int] = []
    registry.subscribe(lambda snap: seen.append(snap.generation))
    web = Record(names=("web",), ipv4=("10.0.0.2",), network="net")
    twin = Record(names=("twin",), ipv4=("10.0.0.9",))
    registry.change("docker", added=SourcePart(networks=(Network("net"),), records=(web, twin,
                                                                                    twin)))
    assert registry.snapshot.by_network["net"]["web"].ipv4 == ("10.0.0.2",)
    # One of the two identical records goes; the name stays, held by the other.
    registry.change("docker", removed=SourcePart(records=(twin,)))
    assert registry.snapshot.global_names["twin"].records == (twin,)
    moved = Record(names=("web",), ipv4=("10.0.0.3",), network="net")
    registry.change("docker", added=SourcePart(records=(moved,)),
                    removed=SourcePart(records=(web,)))
    assert registry.snapshot.by_network["net"]["web"].ipv4 == ("10.0.0.3",)
    assert not registry.change("docker")  # an empty delta publishes nothing
    assert seen == [1, 2, 3]
