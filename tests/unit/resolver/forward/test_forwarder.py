"""The whole forward chain in-process against loopback fault servers: answered and cached,
forward zones routed, zone transfers refused with NOTIMP, SERVFAIL when no upstream is
configured or none answers, identical questions in flight asked once, and SIGHUP's reconfigure
switching upstreams for the next question."""

from __future__ import annotations

import asyncio

import dns.message
import dns.rcode
import pytest

from resolver.answer.chain import ForwardedReply, Trace, settled
from resolver.answer.views import View
from resolver.dns import wire
from resolver.dns.addresses import HostPort
from resolver.forward import forwarder as forwarder_module
from resolver.forward.forwarder import UpstreamForwarder
from resolver.forward.settings import ForwardSettings, parse_forward_zone
from resolver.forward.transport import UpstreamUDP
from tests.support.upstream import Behaviour, FaultServer

VIEW = View(networks=(), forward=True)


def server_of(fault: FaultServer) -> HostPort:
    return HostPort(fault.host, fault.port)


def settings(*servers: HostPort, **extra: object) -> ForwardSettings:
    # Never the host's resolv.conf: with no --upstream the forwarder would read it, and nothing
    # here may be sent to the host's resolver.
    values: dict[str, object] = {"upstream_timeout": 0.3,
                                 "resolv_conf": "/nonexistent/dockdns-test/resolv.conf", **extra}
    # Names under .test are the upstream's here: special-use names are not answered locally.
    values.setdefault("special_names", False)
    return ForwardSettings(upstreams=servers, **values)  # type: ignore[arg-type]


async def ask(forwarder: UpstreamForwarder, name: str, rdtype: str = "A", qid: int = 99,
              trace: Trace | None = None) -> ForwardedReply:
    message = dns.message.make_query(name, rdtype)
    message.id = qid
    packet = message.to_wire()
    return await settled(forwarder.forward(wire.parse_query(packet), packet, False, VIEW,
                                          trace))


def run(forward_settings: ForwardSettings, body) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        forwarder = UpstreamForwarder(forward_settings)
        forwarder.start()
        try:
            await body(forwarder)
        finally:
            await forwarder.close()

    asyncio.run(main())


def answer(reply: ForwardedReply) -> list[str]:
    message = dns.message.from_wire(reply.reply)
    return [str(rdata) for rrset in message.answer for rdata in rrset]


def test_answered_then_cached() -> None:
    with FaultServer() as upstream:
        upstream.add("www.fwd.test", "A", 300, "192.0.2.20")

        async def body(forwarder: UpstreamForwarder) -> None:
            first = await ask(forwarder, "www.fwd.test", qid=1)
            second = await ask(forwarder, "WWW.fwd.test", qid=2)
            assert (first.source, second.source) == ("forward", "cache")
            assert answer(first) == answer(second) == ["192.0.2.20"]
            assert dns.message.from_wire(second.reply).id == 2
            # The name's case is a different question on the wire, the same cache entry.
            assert len(forwarder.cache) == 1

        run(settings(server_of(upstream)), body)
        assert upstream.count("www.fwd.test") == 1


def test_forward_zone_goes_to_its_server() -> None:
    with FaultServer() as default, FaultServer() as corp:
        default.add("www.fwd.test", "A", 300, "192.0.2.21")
        corp.add("db.corp.test", "A", 300, "10.1.1.1")

        async def body(forwarder: UpstreamForwarder) -> None:
            trace = Trace()
            assert answer(await ask(forwarder, "db.corp.test", trace=trace)) == ["10.1.1.1"]
            assert any(str(server_of(corp)) in decision for _, decision in trace.steps)
            assert answer(await ask(forwarder, "www.fwd.test")) == ["192.0.2.21"]

        zone = parse_forward_zone(f"corp.test={server_of(corp)}")
        run(settings(server_of(default), forward_zones=(zone,)), body)
        assert default.count("db.corp.test") == 0 and corp.count("www.fwd.test") == 0


def test_no_upstream() -> None:
    # (Zone transfers never reach the forwarder: the parser refuses them, as
    # tests/integration/test_special_names.py checks against Unbound.)
    async def body(forwarder: UpstreamForwarder) -> None:
        reply = await ask(forwarder, "www.fwd.test")
        assert reply.rcode == wire.SERVFAIL and reply.failed

    run(settings(), body)


def test_no_answer_is_servfail_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    # A silent upstream costs the whole answer budget; a shorter one keeps the test quick.
    monkeypatch.setattr(forwarder_module, "ANSWER_BUDGET", 0.6)
    with FaultServer() as silent:
        silent.behave(Behaviour(drop=True))

        async def body(forwarder: UpstreamForwarder) -> None:
            reply = await ask(forwarder, "www.fwd.test")
            assert reply.rcode == wire.SERVFAIL and reply.failed and reply.memo_until is None
            assert forwarder.stats.failures == 1
            assert forwarder.requests == {(str(server_of(silent)), "timeout"): 1}

        run(settings(server_of(silent)), body)


def test_identical_questions_in_flight_are_asked_once() -> None:
    with FaultServer() as upstream:
        upstream.add("slow.fwd.test", "A", 300, "192.0.2.22")
        upstream.behave(Behaviour(delay=0.2), "slow.fwd.test")

        async def body(forwarder: UpstreamForwarder) -> None:
            replies = await asyncio.gather(*(ask(forwarder, "slow.fwd.test", qid=n)
                                             for n in range(5)))
            assert [dns.message.from_wire(r.reply).id for r in replies] == list(range(5))
            assert all(answer(r) == ["192.0.2.22"] for r in replies)
            assert forwarder.stats.coalesced == 4 and forwarder.stats.resolutions == 1

        run(settings(server_of(upstream), upstream_timeout=2.0), body)
        assert upstream.count("slow.fwd.test") == 1


def test_reconfigure_switches_upstreams() -> None:
    with FaultServer() as old, FaultServer() as new:
        old.add("a.fwd.test", "A", 300, "192.0.2.23")
        new.add("b.fwd.test", "A", 300, "192.0.2.24")

        async def body(forwarder: UpstreamForwarder) -> None:
            assert answer(await ask(forwarder, "a.fwd.test")) == ["192.0.2.23"]
            forwarder.reconfigure(settings(server_of(new)))
            assert answer(await ask(forwarder, "b.fwd.test")) == ["192.0.2.24"]
            assert forwarder.source.table.default == (server_of(new),)

        run(settings(server_of(old)), body)
        assert old.count("b.fwd.test") == 0


def test_many_questions_at_a_silent_upstream_fail_over_on_the_shared_timer() -> None:
    # Fifty distinct questions at once: each is asked of the silent upstream first (none is
    # known to be down yet), each attempt runs out on the one shared timer, and each is then
    # answered by the second upstream.
    count = 50
    with FaultServer() as silent, FaultServer() as good:
        silent.behave(Behaviour(drop=True))
        for n in range(count):
            good.add(f"n{n}.failover.test", "A", 300, f"192.0.2.{n + 1}")

        async def body(forwarder: UpstreamForwarder) -> None:
            replies = await asyncio.wait_for(asyncio.gather(*(
                ask(forwarder, f"n{n}.failover.test", qid=n) for n in range(count))), 30)
            assert [answer(r) for r in replies] == [[f"192.0.2.{n + 1}"] for n in range(count)]
            assert all(r.source == "forward" for r in replies)
            requests = forwarder.requests
            assert requests[(str(server_of(silent)), "timeout")] == count
            assert requests[(str(server_of(good)), "ok")] == count
            # Nothing is left waiting: no question in flight, no deadline that still matters.
            assert forwarder.inflight == 0 and len(forwarder.forward_stage.deadlines) == 0
            # The silent one's attempts were given up as each question ended.
            assert forwarder.udp.pending() == 0

        run(settings(server_of(silent), server_of(good), upstream_timeout=0.3), body)
        assert all(silent.count(f"n{n}.failover.test") == 1 for n in range(count))
        assert all(good.count(f"n{n}.failover.test") == 1 for n in range(count))


def test_sockets_rotate_while_questions_are_answered() -> None:
    waves, per_wave = 6, 20
    with FaultServer() as upstream:
        for n in range(waves * per_wave):
            upstream.add(f"r{n}.rotate.test", "A", 300, "192.0.2.99")

        async def body(forwarder: UpstreamForwarder) -> None:
            # Few sockets, soon retired: many rotations in a short run.
            forwarder.pool.udp = UpstreamUDP(sockets_per_family=2, rotate_after=7)
            for wave in range(waves):
                replies = await asyncio.wait_for(asyncio.gather(*(
                    ask(forwarder, f"r{wave * per_wave + n}.rotate.test")
                    for n in range(per_wave))), 30)
                assert all(answer(r) == ["192.0.2.99"] for r in replies)
            stats = forwarder.udp.stats
            assert stats.udp_sent == waves * per_wave
            # A socket that has sent seven is replaced in the background, once per burst at
            # most (it goes on sending while its successor is bound): each wave of twenty
            # retires at least one of the two.
            assert stats.rotations >= waves
            assert stats.ignored == 0

        run(settings(server_of(upstream)), body)
        ports = {query.source[1] for query in upstream.queries if query.source}
    assert len(ports) >= waves + 2  # the first two sockets' and each replacement's
