"""Real signals to this process: SIGTERM and SIGINT set the stop flag (the handler does nothing
else), SIGHUP calls the reload, and a second SIGINT exits at once (in a forked child, which the
test then reaps)."""

from __future__ import annotations

import asyncio
import os
import signal

from resolver.daemon.signals import StopSignals


def test_stop_and_reload() -> None:
    reloads: list[bool] = []

    async def main() -> StopSignals:
        stopping = asyncio.Event()
        signals = StopSignals(stopping)
        signals.install(asyncio.get_running_loop(), lambda: reloads.append(True))
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(1000):
            if len(reloads) == 2:
                break
            await asyncio.sleep(0.01)
        assert not stopping.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stopping.wait(), 10)
        return signals

    signals = asyncio.run(main())  # closing the loop removes its signal handlers again
    assert reloads == [True, True] and signals.received == 1


def test_a_second_interrupt_exits_at_once() -> None:
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            async def main() -> None:
                stopping = asyncio.Event()
                StopSignals(stopping).install(asyncio.get_running_loop(), lambda: None)
                os.kill(os.getpid(), signal.SIGINT)
                await stopping.wait()  # the first: a normal stop is asked for
                os.kill(os.getpid(), signal.SIGINT)
                await asyncio.sleep(30)  # the second exits with status 1 before this ends

            asyncio.run(main())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
