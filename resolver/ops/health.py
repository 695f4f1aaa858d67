"""Liveness and readiness, for ``/healthz`` and ``/readyz`` and for systemd's READY=1.

A source that must finish something before dockdns can answer correctly (the Docker source's
first sync) registers a ``Readiness``: any object with ``ready`` and ``reason``. dockdns is ready
when its listeners are up and every registered check is ready; with none registered (no Docker
source) it is ready as soon as it listens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# How often ``wait_ready`` looks again: checks are plain attributes, so they are polled; a tenth
# of a second is well within what systemd or an orchestrator would notice.
POLL_INTERVAL = 0.1


@runtime_checkable
class Readiness(Protocol):
    @property
    def name(self) -> str:
        """Which part this is, e.g. ``docker unix:///var/run/docker.sock``."""
        ...

    @property
    def ready(self) -> bool: ...

    @property
    def reason(self) -> str:
        """Why it is not ready (shown in /readyz), e.g. ``engine unreachable: ...``."""
        ...


@dataclass
class Health:
    listening: bool = False  # the DNS listeners are bound and serving
    stopping: bool = False  # a stop signal arrived: finishing in-flight queries
    checks: list[Readiness] = field(default_factory=list)

    def add_check(self, check: Readiness) -> None:
        self.checks.append(check)

    def live(self) -> tuple[bool, str]:
        if self.listening and not self.stopping:
            return True, "ok"
        return False, "shutting down" if self.stopping else "not listening yet"

    def ready(self) -> tuple[bool, str]:
        alive, reason = self.live()
        if not alive:
            return False, reason
        waiting = [f"{check.name}: {check.reason}" for check in self.checks if not check.ready]
        if waiting:
            return False, "\n".join(waiting)
        return True, "ready"

    async def wait_ready(self) -> None:
        while not self.ready()[0]:
            await asyncio.sleep(POLL_INTERVAL)


class SidecarCheck:
    """Sidecar mode (``--as-container``) is ready once that container is in the registry."""

    name = "sidecar"

    def __init__(self, container: str, found: Callable[[], bool]) -> None:
        self.container = container
        self._found = found

    @property
    def ready(self) -> bool:
        return self._found()

    @property
    def reason(self) -> str:
        return (f"container {self.container} is not in the registry (yet): loopback clients "
                f"see no network until it is")
