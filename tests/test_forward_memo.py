"""Cache hits take the handler's memo fast path: the query handler and the forwarder in this
process (with a clock the test moves), the upstream a real fault server on loopback."""

from __future__ import annotations

import asyncio
import os

import dns.message

from discovery.registry import Registry
from resolver.config import Config, HostPort
from resolver.forwarder import UpstreamForwarder
from resolver.handler import AnswerSettings, QueryHandler
from tests.support.net import free_port
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


def test_cache_hits_are_memoized_until_the_ttl_ticks_down() -> None:
    with FaultServer() as upstream:
        upstream.add("memo.test", "A", 300, "198.51.100.60")
        clock = Clock()
        config = Config(listen=(HostPort("127.0.0.1", free_port()),), resolv_conf=os.devnull,
                        upstreams=(HostPort(upstream.host, upstream.port),))

        async def scenario() -> list[dns.message.Message | None]:
            forwarder = UpstreamForwarder(config, clock=clock)
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
                fast(query("memo.test", 3))  # the TTL ticked: the memo entry is over
                again = await handler.answer(query("memo.test", 4), "127.0.0.1", False)
                assert again is not None
                seen.append(dns.message.from_wire(again))
                fast(query("MEMO.test", 5))  # other bytes: not in the memo yet
                return seen
            finally:
                await forwarder.close()

        first, memo, expired, cached, other_case = asyncio.run(scenario())
    assert first is not None and memo is not None and cached is not None
    assert memo.id == 2 and memo.answer[0].ttl == 300
    assert [str(r) for r in memo.answer[0]] == ["198.51.100.60"]
    assert expired is None and other_case is None
    assert cached.id == 4 and cached.answer[0].ttl == 299
    assert upstream.count("memo.test") == 1
