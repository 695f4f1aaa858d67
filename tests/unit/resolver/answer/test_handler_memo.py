"""Cache hits take the memo fast path and stay on it as their TTLs tick down: the query handler
and the forwarder in this process (with a clock the test moves), then a real daemon over UDP;
the upstream is a real fault server on loopback."""

from __future__ import annotations

import asyncio
import os
import time

import dns.message

from discovery.registry.registry import Registry
from resolver.answer.handler import QueryHandler
from resolver.answer.settings import AnswerSettings
from resolver.config.settings import Config
from resolver.config.slices import forward_settings
from resolver.dns.addresses import HostPort
from resolver.forward.forwarder import UpstreamForwarder
from tests.support.daemon import dockdns
from tests.support.net import ask, free_port
from tests.support.scrape import scrape, value
from tests.support.upstream import FaultServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def query(name: str, qid: int) -> bytes:
    message = dns.message.make_query(name, "A", use_edns=False)
    message.id = qid
    return message.to_wire()


def test_cache_hits_stay_in_the_memo_as_the_ttl_ticks_down() -> None:
    with FaultServer() as upstream:
        upstream.add("memo.test", "A", 3, "198.51.100.60")
        clock = Clock()
        config = Config(listen=(HostPort("127.0.0.1", free_port()),), resolv_conf=os.devnull,
                        upstreams=(HostPort(upstream.host, upstream.port),),
                        special_names=False)  # memo.test is the upstream's, not RFC 6761's

        async def scenario() -> list[dns.message.Message | None]:
            forwarder = UpstreamForwarder(forward_settings(config), clock=clock)
            forwarder.start()
            handler = QueryHandler(Registry(), AnswerSettings(), forwarder=forwarder,
                                   clock=clock)
            try:
                seen: list[dns.message.Message | None] = []

                def fast(packet: bytes) -> None:
                    reply = handler.answer_fast(packet, "127.0.0.1", False)
                    seen.append(None if reply is None else dns.message.from_wire(reply))

                first = await handler.answer(query("memo.test", 1), "127.0.0.1", False)
                assert first is not None
                seen.append(dns.message.from_wire(first))
                fast(query("memo.test", 2))  # memoized: same bytes after the ID
                clock.now += 1.0
                fast(query("memo.test", 3))  # the TTL ticked: renewed in the memo
                clock.now += 1.5
                fast(query("memo.test", 4))  # two ticks later
                fast(query("MEMO.test", 5))  # other bytes: not in the memo yet
                clock.now += 0.5
                fast(query("memo.test", 6))  # the cached answer expired: full path again
                return seen
            finally:
                await forwarder.close()

        first, memo, ticked, later, other_case, expired = asyncio.run(scenario())
    assert first is not None and memo is not None and ticked is not None and later is not None
    assert memo.id == 2 and memo.answer[0].ttl == 3
    assert [str(r) for r in memo.answer[0]] == ["198.51.100.60"]
    assert ticked.id == 3 and ticked.answer[0].ttl == 2
    assert later.id == 4 and later.answer[0].ttl == 1
    assert [str(r) for r in later.answer[0]] == ["198.51.100.60"]
    assert other_case is None and expired is None
    assert upstream.count("memo.test") == 1


def test_a_daemon_answers_a_name_asked_across_ttl_ticks_from_the_memo() -> None:
    asked = 8
    with FaultServer() as upstream:
        upstream.add("ticks.test", "A", 60, "198.51.100.61")
        with dockdns("--upstream", upstream.address) as daemon:
            assert daemon.metrics_port is not None
            ttls = []
            for _ in range(asked):  # spread over ~2.5 s: the TTL ticks at least twice
                reply = ask(daemon.host, daemon.port, "ticks.test", use_edns=False)
                assert [str(r) for r in reply.answer[0]] == ["198.51.100.61"]
                ttls.append(reply.answer[0].ttl)
                time.sleep(0.35)
            samples = scrape(daemon.metrics_port)
    assert ttls == sorted(ttls, reverse=True) and ttls[0] == 60
    assert ttls[-1] <= 58, ttls  # it did count down, so renewed bytes were given
    assert upstream.count("ticks.test") == 1
    # Only the first query took the full path (forwarded); every later one, across the ticks
    # too, was a memo hit.
    assert value(samples, "dockdns_memo_hits_total") == asked - 1
    assert value(samples, "dockdns_cache_misses_total") == 1
