"""The source contract's shared pieces: DiscoverySettings defaults as Config's, LoadError naming
its engine, and run_until_settled stopping a source after its first sync or failing in time."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from discovery.registry import source
from discovery.registry.source import DiscoverySettings, LoadError, run_until_settled
from resolver.config.settings import Config


def test_defaults_are_configs() -> None:
    for field in dataclasses.fields(DiscoverySettings):
        assert getattr(DiscoverySettings(), field.name) == getattr(Config(), field.name)


def test_load_error() -> None:
    err = LoadError("docker engine unix:///x.sock", "unreachable: refused")
    assert err.what == "docker engine unix:///x.sock"
    assert str(err) == "docker engine unix:///x.sock unreachable: refused"


def test_run_until_settled_stops_the_source_once_settled() -> None:
    stopped = []

    async def main() -> None:
        settled = asyncio.Event()

        async def run() -> None:
            settled.set()
            try:
                await asyncio.sleep(3600)
            finally:
                stopped.append(True)

        await run_until_settled(run(), settled, "engine x")

    asyncio.run(main())
    assert stopped == [True]


def test_run_until_settled_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "LOAD_TIMEOUT", 0.05)

    async def main() -> None:
        async def never() -> None:
            await asyncio.sleep(3600)

        with pytest.raises(LoadError) as raised:
            await run_until_settled(never(), asyncio.Event(), "docker engine y")
        assert raised.value.what == "docker engine y" and "did not answer" in str(raised.value)

    asyncio.run(main())
