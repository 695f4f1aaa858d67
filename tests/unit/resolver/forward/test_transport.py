"""The UDP transport towards upstreams in this process (resolver/forward/transport.py), against
the fault server on loopback: replies matched to their queries, sockets rotated to new ports."""

from __future__ import annotations

import asyncio

import dns.message

from resolver.dns import wire
from resolver.dns.addresses import HostPort
from resolver.forward.transport import UpstreamUDP
from tests.support.upstream import Behaviour, FaultServer


def message(name: str) -> tuple[bytes, bytes]:
    """A query's wire form and its question section."""
    data = dns.message.make_query(name, "A", use_edns=False).to_wire()
    return data, data[wire.HEADER.size:]


def test_sockets_rotate_to_new_ports_and_retired_ones_still_get_their_replies() -> None:
    with FaultServer() as upstream:
        for n in range(7):
            upstream.add(f"q{n}.rotate.test", "A", 300, f"192.0.2.{n + 1}")
        # The third query (the one that retires the first socket) is answered late.
        upstream.behave(Behaviour(delay=0.3), "q2.rotate.test")
        server = HostPort(upstream.host, upstream.port)

        async def scenario() -> tuple[list[dns.message.Message], int]:
            udp = UpstreamUDP(sockets_per_family=1, rotate_after=3)
            try:
                late = None
                replies = []
                for n in range(7):
                    data, question = message(f"q{n}.rotate.test")
                    exchange = await udp.send(server, data, question)
                    if n == 2:
                        late = exchange
                        continue
                    replies.append(dns.message.from_wire(
                        await asyncio.wait_for(exchange.future, 3)))
                assert late is not None
                replies.append(dns.message.from_wire(await asyncio.wait_for(late.future, 3)))
                return replies, udp.stats.rotations
            finally:
                await udp.close()

        replies, rotations = asyncio.run(scenario())
        ports = [query.source[1] for query in upstream.queries if query.source]
    assert sorted(str(r.answer[0][0]) for r in replies) == [f"192.0.2.{n + 1}" for n in range(7)]
    assert rotations == 2
    # Three queries per port: 0-2 on the first, 3-5 on the second, 6 on the third.
    assert len(ports) == 7 and len(set(ports)) == 3
    assert ports[0] == ports[2] != ports[3] == ports[5] != ports[6]


def test_a_reply_from_elsewhere_or_for_another_question_is_not_taken() -> None:
    with FaultServer() as upstream, FaultServer() as other:
        upstream.add("match.test", "A", 300, "192.0.2.50")
        upstream.behave(Behaviour(forge="source"), "match.test")

        async def scenario() -> tuple[dns.message.Message, int]:
            udp = UpstreamUDP(sockets_per_family=1)
            try:
                data, question = message("match.test")
                exchange = await udp.send(HostPort(upstream.host, upstream.port), data,
                                          question)
                reply = await asyncio.wait_for(exchange.future, 3)
                return dns.message.from_wire(reply), udp.stats.ignored
            finally:
                await udp.close()

        reply, ignored = asyncio.run(scenario())
    assert [str(r) for r in reply.answer[0]] == ["192.0.2.50"]
    assert ignored == 1  # the forged copy from another port
    assert other.queries == []
