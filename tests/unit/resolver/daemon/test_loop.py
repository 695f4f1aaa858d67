"""The event loop: uvloop where installed, asyncio's own (with a warning) where not."""

from __future__ import annotations

import logging
import sys

import pytest

from resolver.daemon.loop import loop_name, run


async def name_and(value: int) -> tuple[str, int]:
    return loop_name(), value


def test_uvloop_when_installed() -> None:
    pytest.importorskip("uvloop")  # a dependency on Linux: installed with dockdns
    assert run(name_and(7)) == ("uvloop", 7)


def test_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch,
                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    with caplog.at_level(logging.WARNING, logger="dockdns"):
        assert run(name_and(8)) == ("asyncio", 8)
    assert "uvloop is not installed" in caplog.text
