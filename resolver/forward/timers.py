"""One timer for every attempt's and every question's deadline.

Each question in flight has a deadline per attempt (--upstream-timeout) and one for its answer
budget. A ``TimerHandle`` per deadline would cost a heap entry and a handle object each; but
deadlines made with the same timeout expire in the order they were made, so each timeout value
gets a deque in which new deadlines go at the end and expired ones leave from the front, and a
single ``loop.call_at`` is armed for the earliest front of them all.

A deadline that no longer matters is cancelled by its key: it leaves the table of live ones at
once, and its deque entry (two numbers, which the garbage collector does not track) is skipped
when its time comes. So nothing an answered question held stays alive until its deadline.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable
from typing import Any, Protocol

# uvloop's timers fire on a millisecond clock: a deadline within this of now counts as passed.
TIMER_SLACK = 0.001


class Expiring(Protocol):
    def expired(self, token: Any) -> None:
        """The deadline set with ``token`` has passed."""
        ...


class Deadlines:
    """Deadlines by timeout value, each a deque in expiry order, behind one armed timer."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock  # the deadlines' time scale (the forwarder's clock)
        self._queues: dict[float, collections.deque[tuple[float, int]]] = {}
        # The deadlines that still matter, by key: who to tell, and with what token.
        self._live: dict[int, tuple[Expiring, Any]] = {}
        self._keys = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = 0.0  # the deadline the handle fires for

    def __len__(self) -> int:
        """Deadlines that still matter."""
        return len(self._live)

    def add(self, timeout: float, owner: Expiring, token: Any, now: float) -> int:
        """``owner.expired(token)`` once ``timeout`` seconds after ``now`` have passed, unless
        cancelled first by the key returned."""
        deadline = now + timeout
        key = next(self._keys)
        self._live[key] = (owner, token)
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = collections.deque()
        if queue and queue[-1][0] > deadline:
            # ``now`` is older than the last one's (a caller's reading taken earlier).
            index = len(queue)
            while index and queue[index - 1][0] > deadline:
                index -= 1
            queue.insert(index, (deadline, key))
        else:
            queue.append((deadline, key))
        if self._handle is None or deadline < self._armed_for:
            self._arm(deadline)
        return key

    def cancel(self, key: int) -> None:
        self._live.pop(key, None)

    def _arm(self, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        loop = asyncio.get_running_loop()
        self._armed_for = deadline
        self._handle = loop.call_at(loop.time() + max(0.0, deadline - self.clock()), self._fire)

    def _fire(self) -> None:
        self._handle = None
        now = self.clock() + TIMER_SLACK
        live = self._live
        for queue in list(self._queues.values()):
            while queue and queue[0][0] <= now:
                entry = live.pop(queue.popleft()[1], None)
                if entry is not None:
                    entry[0].expired(entry[1])
        earliest: float | None = None
        for timeout, queue in list(self._queues.items()):
            while queue and queue[0][1] not in live:
                queue.popleft()  # cancelled: no need to wake up for it
            if queue:
                head = queue[0][0]
                earliest = head if earliest is None or head < earliest else earliest
            else:
                del self._queues[timeout]  # timeouts change on SIGHUP: drop unused queues
        if earliest is not None and (self._handle is None or earliest < self._armed_for):
            self._arm(earliest)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._queues.clear()
        self._live.clear()
