"""Liveness and readiness: live once listening and until stopping; ready when live and every
check is ready, with the reasons of those that are not; the sidecar check."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from resolver.ops.health import Health, Readiness, SidecarCheck


@dataclass
class Check:
    name: str
    ready: bool = False
    reason: str = "waiting"


def test_live() -> None:
    health = Health()
    assert health.live() == (False, "not listening yet")
    health.listening = True
    assert health.live() == (True, "ok")
    health.stopping = True
    assert health.live() == (False, "shutting down")
    assert health.ready() == (False, "shutting down")


def test_ready_lists_what_is_not_ready() -> None:
    health = Health(listening=True)
    assert health.ready() == (True, "ready")
    one, two = Check("docker one", reason="engine unreachable"), Check("docker two")
    health.add_check(one)
    health.add_check(two)
    assert health.ready() == (False, "docker one: engine unreachable\ndocker two: waiting")
    one.ready = True
    assert health.ready() == (False, "docker two: waiting")
    two.ready = True
    assert health.ready() == (True, "ready")


def test_wait_ready_returns_once_ready() -> None:
    health = Health(listening=True)
    check = Check("slow")
    health.add_check(check)

    async def main() -> None:
        waiting = asyncio.ensure_future(health.wait_ready())
        await asyncio.sleep(0.15)
        assert not waiting.done()
        check.ready = True
        await asyncio.wait_for(waiting, 5)

    asyncio.run(main())


def test_sidecar_check() -> None:
    found = [False]
    check = SidecarCheck("web", lambda: found[0])
    assert isinstance(check, Readiness) and isinstance(Check("x"), Readiness)
    assert not check.ready and "container web is not in the registry" in check.reason
    found[0] = True
    assert check.ready
