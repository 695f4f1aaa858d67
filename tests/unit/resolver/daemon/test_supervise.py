"""The sources' supervisor (resolver/daemon/supervise.py) around a source whose run loop fails
as a buggy one would: it raises on its first two runs, and its start() fails once."""

from __future__ import annotations

import asyncio

from resolver.config.settings import Config
from resolver.daemon.supervise import SourceSupervisor
from resolver.ops.health import Health


class FlakySource:
    name = "flaky"

    def __init__(self) -> None:
        self.runs = 0
        self.starts = 0
        self.running = asyncio.Event()

    async def start(self) -> None:
        self.starts += 1
        if self.starts == 2:
            raise OSError("start failed once")

    async def run(self) -> None:
        self.runs += 1
        if self.runs <= 2:
            raise ValueError("embedded null character\nforged line")
        self.running.set()
        await asyncio.Event().wait()

    async def load(self) -> None:
        return None

    def reconfigure(self, config: Config) -> None:
        return None

    async def first_sync(self) -> None:
        return None

    def close(self) -> None:
        return None


def test_a_failing_run_loop_is_restarted_and_reported_until_it_runs() -> None:
    async def scenario() -> tuple[list[tuple[bool, str]], dict[str, int], int]:
        source = FlakySource()
        supervisor = SourceSupervisor(first_backoff=0.01)
        health = Health(listening=True)
        health.add_check(supervisor.check(source))
        seen = [health.ready()]
        task = asyncio.get_running_loop().create_task(supervisor.run(source))
        while not supervisor.failing:
            await asyncio.sleep(0.001)
        seen.append(health.ready())
        await asyncio.wait_for(source.running.wait(), 10)
        seen.append(health.ready())
        task.cancel()
        return seen, dict(supervisor.restarts), source.starts

    seen, restarts, starts = asyncio.run(scenario())
    assert seen[0] == (True, "ready")
    ready, reason = seen[1]
    assert not ready and reason.startswith("flaky: failed (ValueError: embedded null character")
    assert "\n" not in reason and "\\010forged line" in reason
    assert seen[2] == (True, "ready")
    # run failed, restart's start failed, run failed, then it ran: three restarts.
    assert restarts == {"flaky": 3} and starts == 3
