"""The upstream pool over loopback: a probe brings an upstream that answers back to health, a
probe of a silent one leaves it down, one probe per upstream at a time, and counters per
upstream and outcome."""

from __future__ import annotations

import asyncio

from resolver.dns.addresses import HostPort
from resolver.forward.pool import UpstreamPool
from tests.support.upstream import Behaviour, FaultServer


def mark_down(pool: UpstreamPool, server: HostPort) -> None:
    for _ in range(3):
        pool.health.failed(server, 0.0)
    assert pool.health.is_down(server)


def test_probe_brings_an_answering_upstream_back_and_leaves_a_silent_one_down() -> None:
    with FaultServer() as alive, FaultServer() as silent:
        silent.behave(Behaviour(drop=True))
        up = HostPort(alive.host, alive.port)
        quiet = HostPort(silent.host, silent.port)

        async def scenario() -> None:
            pool = UpstreamPool(timeout=0.3)
            try:
                mark_down(pool, up)
                mark_down(pool, quiet)
                pool.probe_down()
                pool.probe_down()  # already probing both: no second probe each
                probes = list(pool.probes())
                assert len(probes) == 2
                await asyncio.wait(probes, timeout=10)
                assert list(pool.probes()) == []
                assert not pool.health.is_down(up) and pool.health.is_down(quiet)
            finally:
                await pool.close()

        asyncio.run(scenario())
        # Each was asked once, by the probe (the pool's probe query is for the root).
        assert len(alive.queries) == 1 and len(silent.queries) == 1


def test_counts_per_upstream_and_outcome() -> None:
    pool = UpstreamPool(timeout=1.0)
    server = HostPort("127.0.0.1", 5301)
    pool.count(server, "answer")
    pool.count(server, "answer")
    pool.count(HostPort("::1", 53), "timeout")
    assert pool.requests == {("127.0.0.1:5301", "answer"): 2, ("[::1]:53", "timeout"): 1}


def test_close_cancels_running_probes() -> None:
    with FaultServer() as silent:
        silent.behave(Behaviour(drop=True))
        server = HostPort(silent.host, silent.port)

        async def scenario() -> None:
            pool = UpstreamPool(timeout=60.0)
            mark_down(pool, server)
            pool.probe_down()
            (probe,) = pool.probes()
            await asyncio.sleep(0)
            await pool.close()
            assert probe.done() and pool.health.is_down(server)

        asyncio.run(scenario())
