"""Fixtures the engine tests share: one refusing upstream per module and a counting proxy in
front of the engine's socket (tests/support/engine_proxy.py), so a test can count, hold back,
cut or silence the engine's calls without disturbing the shared engine itself.

A test module that needs an upstream that answers defines its own ``upstream``, which takes
precedence over this one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine import engine_socket
from tests.support.engine_proxy import EngineProxy
from tests.support.quiet_upstream import refusing_upstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """A loopback upstream that refuses everything at once: nothing leaves the machine, and a
    name dockdns does not hold is answered quickly instead of waiting out the time budget."""
    with refusing_upstream() as address:
        yield address


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[EngineProxy]:
    with EngineProxy(tmp_path / "engine.sock", engine_socket()) as made:
        yield made
