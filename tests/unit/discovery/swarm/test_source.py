"""The Swarm source without an engine to hand: it needs at least one URL, is named for its
engine or the manager list, and against engines that are not there it settles with the reason,
moves on to the next manager, keeps retrying and leaves the registry alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from discovery.registry.registry import Registry
from discovery.swarm.source import SwarmSource


def test_names_and_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="at least one engine"):
        SwarmSource(Registry(), [], 2.0, local=True)
    url = f"unix://{tmp_path}/e.sock"
    assert SwarmSource(Registry(), [url], 2.0, local=True).name == f"swarm:{url}"
    assert SwarmSource(Registry(), [url, url], 2.0, local=False).name == "swarm:managers"
    monkeypatch.setenv("DOCKER_HOST", url)
    assert SwarmSource(Registry(), [None], 2.0, local=True).name == f"swarm:{url}"


def test_missing_managers_settle_with_the_reason_and_rotate(tmp_path: Path) -> None:
    urls = [f"unix://{tmp_path}/one.sock", f"unix://{tmp_path}/two.sock"]
    registry = Registry()
    source = SwarmSource(registry, urls, 2.0, local=False)

    async def main() -> None:
        task = asyncio.ensure_future(source.run())
        await asyncio.wait_for(source.settled.wait(), 10)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert source.url == urls[0]
    asyncio.run(main())
    assert source.error is not None and "No such file" in source.error
    assert source.url == urls[1]  # the next attempt goes to the next manager
    assert registry.part(source.name) is None
