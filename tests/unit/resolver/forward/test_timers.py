"""The shared deadlines (resolver/forward/timers.py) on a real event loop: each fires once, in
deadline order across timeout values, a cancelled one never, one timer is armed at a time and
re-armed for an earlier deadline, and nothing is kept after the last fired."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from resolver.forward.timers import Deadlines


class Owner:
    def __init__(self, done: asyncio.Future[None], expected: int) -> None:
        self.fired: list[Any] = []
        self.done = done
        self.expected = expected

    def expired(self, token: Any) -> None:
        self.fired.append(token)
        if len(self.fired) == self.expected:
            self.done.set_result(None)


def test_deadlines_fire_in_order_once_and_cancelled_ones_never() -> None:
    async def scenario() -> tuple[list[Any], int, int]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(time.monotonic)
        owner = Owner(loop.create_future(), expected=5)
        now = time.monotonic()
        # A long timeout first: the timer is armed for it, then re-armed for shorter ones.
        deadlines.add(0.30, owner, "long", now)
        keys = [deadlines.add(0.05, owner, f"short{n}", now + n * 0.01) for n in range(4)]
        deadlines.cancel(keys[1])
        deadlines.add(0.02, owner, "shortest", now)
        armed = 1 if deadlines._handle is not None else 0
        await asyncio.wait_for(owner.done, 10)
        await asyncio.sleep(0.05)  # nothing else fires after the last
        return owner.fired, armed, len(deadlines)

    fired, armed, left = asyncio.run(scenario())
    assert fired == ["shortest", "short0", "short2", "short3", "long"]
    assert armed == 1 and left == 0


def test_a_deadline_added_while_others_fire_is_kept() -> None:
    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(time.monotonic)
        done: asyncio.Future[None] = loop.create_future()

        class Chained:
            fired: list[Any] = []

            def expired(self, token: Any) -> None:
                self.fired.append(token)
                if token == "first":
                    # As a resolution does when an attempt times out: the next attempt's.
                    deadlines.add(0.3, self, "second", time.monotonic())
                    deadlines.add(0.01, self, "third", time.monotonic())
                elif token == "second":
                    done.set_result(None)

        chained = Chained()
        deadlines.add(0.01, chained, "first", time.monotonic())
        await asyncio.wait_for(done, 10)
        deadlines.close()
        return chained.fired

    assert asyncio.run(scenario()) == ["first", "third", "second"]
