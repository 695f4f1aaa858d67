"""What each forward counter counts, read off a real forward chain against a loopback fault
server: the metrics (dockdns_cache_*, dockdns_forward_*) read exactly these numbers."""

from __future__ import annotations

import asyncio
import dataclasses

import dns.message
import pytest

from resolver.answer.chain import settled
from resolver.answer.views import View
from resolver.dns import wire
from resolver.dns.addresses import HostPort
from resolver.forward import forwarder as forwarder_module
from resolver.forward.counters import ForwarderStats
from resolver.forward.forwarder import UpstreamForwarder
from resolver.forward.settings import ForwardSettings
from tests.support.upstream import Behaviour, FaultServer


async def ask(forwarder: UpstreamForwarder, name: str, rdtype: str = "A") -> int:
    packet = dns.message.make_query(name, rdtype).to_wire()
    reply = await settled(forwarder.forward(wire.parse_query(packet), packet, False,
                                            View(networks=(), forward=True)))
    return reply.rcode


def test_all_start_at_zero() -> None:
    stats = ForwarderStats()
    assert all(getattr(stats, f.name) == 0 for f in dataclasses.fields(ForwarderStats))


def test_each_counter_counts_its_event(monkeypatch: pytest.MonkeyPatch) -> None:
    # The lost question costs the whole answer budget; a shorter one keeps the test quick.
    monkeypatch.setattr(forwarder_module, "ANSWER_BUDGET", 0.6)
    with FaultServer() as upstream:
        upstream.add("hit.count.test", "A", 300, "192.0.2.30")
        upstream.add("slow.count.test", "A", 300, "192.0.2.31")
        upstream.behave(Behaviour(delay=0.3), "slow.count.test")
        upstream.behave(Behaviour(drop=True), "lost.count.test")
        server = HostPort(upstream.host, upstream.port)

        async def main() -> ForwarderStats:
            forwarder = UpstreamForwarder(ForwardSettings(
                upstreams=(server,), upstream_timeout=0.2, max_inflight=1, special_names=False,
                resolv_conf="/nonexistent/dockdns-test/resolv.conf"))
            forwarder.start()
            try:
                await ask(forwarder, "hit.count.test")  # a miss, resolved
                await ask(forwarder, "hit.count.test")  # a hit
                await ask(forwarder, "1.0.0.10.in-addr.arpa", "PTR")  # --bogus-priv
                await ask(forwarder, "lost.count.test")  # a miss, resolved, failed
                # With one question in flight, a second distinct one overflows.
                slow = asyncio.ensure_future(ask(forwarder, "slow.count.test"))
                await asyncio.sleep(0)  # it starts its resolution before its first wait
                assert await ask(forwarder, "other.count.test") == wire.SERVFAIL
                await slow
                return forwarder.stats
            finally:
                await forwarder.close()

        stats = asyncio.run(main())
    assert stats == ForwarderStats(cache_hits=1, cache_misses=4, resolutions=3, failures=1,
                                   private_reverse=1, overflow=1)
