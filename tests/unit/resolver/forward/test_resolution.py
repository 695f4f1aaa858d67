"""One question asked of a group of upstreams on loopback fault servers: the next upstream on
SERVFAIL or silence, TCP when the UDP answer is truncated, REFUSED passed on only when every
upstream that answered refused, and the per-upstream outcomes counted."""

from __future__ import annotations

import asyncio
import time

import dns.message
import dns.rcode

from resolver.dns.addresses import HostPort
from resolver.dns.upstream_message import UpstreamReply, render, upstream_query
from resolver.forward.counters import ForwarderStats
from resolver.forward.pool import UpstreamPool
from resolver.forward.resolution import Resolution, outcome_of
from resolver.forward.timers import Deadlines
from tests.support.replies import client_query
from tests.support.upstream import Behaviour, FaultServer

NAME = "www.resolution.test"


def server_of(fault: FaultServer) -> HostPort:
    return HostPort(fault.host, fault.port)


def resolve(servers: list[HostPort], tcp: bool = False, timeout: float = 0.5
            ) -> tuple[UpstreamReply | None, Resolution, UpstreamPool]:
    query = client_query(NAME)

    async def main() -> tuple[UpstreamReply | None, Resolution, UpstreamPool]:
        pool = UpstreamPool(timeout)
        deadlines = Deadlines(time.monotonic)
        ended: asyncio.Future[UpstreamReply | None] = asyncio.get_running_loop().create_future()
        try:
            resolution = Resolution(pool, ForwarderStats(), time.monotonic,
                                    upstream_query(query, 0), query.question,
                                    time.monotonic(), 10.0, deadlines,
                                    lambda _, reply: ended.set_result(reply))
            resolution.start(servers, tcp)
            reply = await ended
            return reply, resolution, pool
        finally:
            deadlines.close()
            await pool.close()

    return asyncio.run(main())


def address_of(reply: UpstreamReply | None) -> str:
    assert reply is not None
    rendered = render(reply, client_query(NAME), reply.ttls, 0, 65535)
    return str(dns.message.from_wire(rendered).answer[0][0])


def test_servfail_then_the_next_upstream() -> None:
    with FaultServer() as failing, FaultServer() as good:
        failing.behave(Behaviour(rcode=dns.rcode.SERVFAIL))
        good.add(NAME, "A", 300, "192.0.2.7")
        reply, _, pool = resolve([server_of(failing), server_of(good)])
    assert address_of(reply) == "192.0.2.7"
    assert pool.requests == {(str(server_of(failing)), "servfail"): 1,
                             (str(server_of(good)), "ok"): 1}


def test_a_silent_upstream_is_passed_over_and_marked() -> None:
    with FaultServer() as silent, FaultServer() as good:
        silent.behave(Behaviour(drop=True))
        good.add(NAME, "A", 300, "192.0.2.8")
        reply, _, pool = resolve([server_of(silent), server_of(good)], timeout=0.2)
    assert address_of(reply) == "192.0.2.8"
    assert pool.requests[(str(server_of(silent)), "timeout")] == 1


def test_truncated_udp_is_fetched_over_tcp() -> None:
    with FaultServer() as upstream:
        upstream.add(NAME, "A", 300, "192.0.2.9")
        upstream.behave(Behaviour(truncate_udp=True))
        reply, _, pool = resolve([server_of(upstream)])
        transports = [q.transport for q in upstream.queries]
    assert address_of(reply) == "192.0.2.9"
    assert transports == ["udp", "tcp"]
    assert pool.requests == {(str(server_of(upstream)), "truncated"): 1,
                             (str(server_of(upstream)), "ok"): 1}


def test_tcp_clients_ask_over_tcp() -> None:
    with FaultServer() as upstream:
        upstream.add(NAME, "A", 300, "192.0.2.10")
        reply, _, _ = resolve([server_of(upstream)], tcp=True)
        assert [q.transport for q in upstream.queries] == ["tcp"]
    assert address_of(reply) == "192.0.2.10"


def test_refused_everywhere_is_refused_and_one_servfail_makes_it_servfail() -> None:
    with FaultServer() as one, FaultServer() as two:
        one.behave(Behaviour(rcode=dns.rcode.REFUSED))
        two.behave(Behaviour(rcode=dns.rcode.REFUSED))
        reply, resolution, _ = resolve([server_of(one), server_of(two)])
        assert reply is None and resolution.failure_rcode == dns.rcode.REFUSED
        two.behave(Behaviour(rcode=dns.rcode.SERVFAIL))
        reply, resolution, _ = resolve([server_of(one), server_of(two)])
        assert reply is None and resolution.failure_rcode == dns.rcode.SERVFAIL


def test_outcome_labels() -> None:
    assert outcome_of(None) == "bad_reply"
