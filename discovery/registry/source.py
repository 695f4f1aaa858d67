"""What a registry source is (``Source``), and the discovery slice of the configuration it is
made and reconfigured from.

A source is anything that feeds the registry. ``serve`` calls ``start()`` before it listens (what
must be there for the first query), then runs ``run()`` as a background task; ``dockdns check``
and ``dockdns registry`` call ``load()`` once and read the snapshot, with no daemon. SIGHUP calls
``reconfigure()`` with the new settings. Each source's folder (discovery/hosts, docker, swarm) has
a ``setup.py`` that makes its sources from these settings.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from discovery.docker.conventions import COMPAT_ALL
from discovery.static.records import StaticRecord


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    """Every source's settings; defaults as ``Config``'s."""

    hosts_files: tuple[str, ...] = ()
    docker: bool = True
    docker_hosts: tuple[str, ...] = ()
    include_unhealthy: bool = False
    swarm: bool = True
    swarm_managers: tuple[str, ...] = ()
    swarm_refresh: float = 2.0
    swarm_reconcile: float = 60.0
    compat: tuple[str, ...] = COMPAT_ALL  # other tools' conventions the Docker source honours
    records: tuple[StaticRecord, ...] = ()


# How long `dockdns check` / `dockdns registry` wait for an engine's first listing (every source
# loads at once, so this bounds the whole command), and how long each of their engine API calls
# may take: a hung engine is reported once this has passed, not held on to.
LOAD_TIMEOUT = 10.0


class LoadError(Exception):
    """A source could not be loaded for ``check``/``registry``. ``what`` names the engine (the
    sources reading one engine fail as one: it is reported once)."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what} {reason}")
        self.what = what


async def run_until_settled(run: Coroutine[Any, Any, None], settled: asyncio.Event,
                            what: str) -> None:
    """Run a remote source until its first sync settled, then stop it; ``LoadError`` naming
    ``what`` when that takes longer than LOAD_TIMEOUT."""
    task = asyncio.get_running_loop().create_task(run)
    try:
        await asyncio.wait_for(settled.wait(), LOAD_TIMEOUT)
    except TimeoutError:
        raise LoadError(what, f"did not answer within {LOAD_TIMEOUT:.0f} s") from None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Source(Protocol):
    @property
    def name(self) -> str: ...

    async def start(self) -> None:
        """What must be loaded before the daemon listens. Must not wait on anything remote."""
        ...

    async def run(self) -> None:
        """Keep the registry current until cancelled (a background task of the daemon)."""
        ...

    async def load(self) -> None:
        """One complete load, for the commands that run without a daemon; raises on failure."""
        ...

    def reconfigure(self, settings: DiscoverySettings) -> None:
        """Apply a re-read config (SIGHUP)."""
        ...

    async def first_sync(self) -> None:
        """Return once the first sync was done or failed (startup waits on it, bounded)."""
        ...

    def close(self) -> None:
        """Let go of connections and threads (shutdown); ``run`` is cancelled by the daemon."""
        ...
