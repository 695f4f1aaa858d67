"""The Docker source's state on the loop, driven as a session does: a full listing replaces the
part, events mark containers stale (a stop removes at once), a refresh applies what it read,
health filtering switches live; the engine clock conversion for ``since``; and a run against an
engine that is not there settles with the reason and keeps retrying, without touching the
registry."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from discovery.docker.events import DockerEvent
from discovery.docker.source import DockerSource, EngineLost, Listing, engine_timestamp
from discovery.registry.model import Network
from discovery.registry.registry import Registry

APPNET = Network(name="appnet", driver="bridge", source="docker")


def inspect(cid: str, name: str, address: str, *, running: bool = True,
            health: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"Running": running}
    if health:
        state["Health"] = {"Status": health}
    return {"Id": cid, "Name": f"/{name}", "State": state, "Config": {"Hostname": ""},
            "NetworkSettings": {"Networks": {"appnet": {"IPAddress": address}}}}


def names(registry: Registry, source: DockerSource) -> set[str]:
    part = registry.part(source.name)
    assert part is not None
    return {name for record in part.records for name in record.names}


def test_listing_events_and_refresh() -> None:
    registry = Registry()
    source = DockerSource(registry, "unix:///nonexistent.sock")
    source.replace(Listing({"appnet": APPNET}, {
        "a" * 64: inspect("a" * 64, "web", "172.30.0.2"),
        "b" * 64: inspect("b" * 64, "db", "172.30.0.3", health="starting")}))
    assert names(registry, source) == {"web", "a" * 12}  # db: not healthy yet
    assert registry.part(source.name).networks == (APPNET,)  # type: ignore[union-attr]
    # A stop is certain without asking: gone at once, and still marked for a re-inspect.
    source.on_event(DockerEvent("container", "die", "a" * 64))
    assert names(registry, source) == set()
    source.on_event(DockerEvent("network", "connect", "net1", {"container": "c" * 64}))
    assert source.take_stale() == ({"a" * 64, "c" * 64}, True)
    assert source.take_stale() == (set(), False) and source.events_total == 2
    source.return_stale({"c" * 64}, False)
    assert source.take_stale() == ({"c" * 64}, False)
    # The refresh read: c runs now, a is gone (inspect found nothing), b became healthy.
    source.apply(None, {"c" * 64: inspect("c" * 64, "cache", "172.30.0.4"), "a" * 64: None,
                        "b" * 64: inspect("b" * 64, "db", "172.30.0.3", health="healthy")})
    assert names(registry, source) == {"cache", "c" * 12, "db", "b" * 12}
    source.apply(None, {"c" * 64: inspect("c" * 64, "cache", "172.30.0.4", running=False)})
    assert names(registry, source) == {"db", "b" * 12}


def test_include_unhealthy_switches_live() -> None:
    registry = Registry()
    source = DockerSource(registry, "unix:///nonexistent.sock")
    source.replace(Listing({}, {"d" * 64: inspect("d" * 64, "sick", "172.30.0.9",
                                                  health="unhealthy")}))
    assert names(registry, source) == set()
    generation = registry.snapshot.generation
    source.set_include_unhealthy(True)
    assert names(registry, source) == {"sick", "d" * 12}
    source.set_include_unhealthy(True)  # no change: no new generation
    assert registry.snapshot.generation == generation + 1


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-01-02T03:04:05.123456789Z", "1704164645.123456789"),
    ("2024-01-02T03:04:05Z", "1704164645.000000000"),
    ("2024-01-02T04:34:05.5+01:30", "1704164645.500000000"),
    ("2024-01-01T22:04:05.1234567891-05:00", "1704164645.123456789"),
])
def test_engine_timestamp(text: str, expected: str) -> None:
    assert engine_timestamp(text) == expected


def test_engine_timestamp_rejects_other_forms() -> None:
    with pytest.raises(EngineLost, match="unexpected engine time"):
        engine_timestamp("Tue Jan  2 03:04:05 2024")


def test_run_against_a_missing_engine_settles_with_the_reason(tmp_path: Path) -> None:
    registry = Registry()
    source = DockerSource(registry, f"unix://{tmp_path}/no-engine.sock")

    async def main() -> None:
        task = asyncio.ensure_future(source.run())
        await asyncio.wait_for(source.settled.wait(), 10)
        assert not task.done()  # it retries; cancelled by its owner
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not source.ready and not source.connected
    assert source.error is not None and "No such file" in source.error
    assert registry.part(source.name) is None and registry.snapshot.generation == 0
