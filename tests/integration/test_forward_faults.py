"""Forwarding against upstreams that misbehave: the fault-injecting server of
tests/support/upstream.py.

All through the real daemon over loopback sockets; every daemon gets its upstreams explicitly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.support.daemon import RunningDaemon, dockdns
from tests.support.net import addresses, ask
from tests.support.upstream import FORGED_ADDRESS, Behaviour, FaultServer
from tests.support.wait import wait_for

# More addresses than fit 512 bytes, or our 1232-byte upstream UDP size: ~1.6 kB as an answer.
MANY = [f"192.0.2.{i}" for i in range(1, 101)]




@pytest.fixture(scope="module")
def fault() -> Iterator[FaultServer]:
    server = FaultServer(zone="fault.test", soa_ttl=120)
    server.add("a.fault.test", "A", 300, "198.51.100.1")
    server.add("tc.fault.test", "A", 300, "198.51.100.2")
    server.add("tcp.fault.test", "A", 300, "198.51.100.3")
    server.add("big.fault.test", "A", 300, *MANY)
    server.add("shared.fault.test", "A", 300, "198.51.100.4")
    server.add("servfail.fault.test", "A", 300, "198.51.100.5")
    server.add("nodata.fault.test", "TXT", 300, '"only text"')
    for kind in ("id", "question", "source", "garbage"):
        server.add(f"forged-{kind}.fault.test", "A", 300, "198.51.100.6")
    server.behave(Behaviour(truncate_udp=True), "tc.fault.test")
    server.behave(Behaviour(delay=0.5), "shared.fault.test")
    server.behave(Behaviour(rcode=dns.rcode.SERVFAIL), "servfail.fault.test")
    for kind in ("id", "question", "source"):
        server.behave(Behaviour(forge=kind), f"forged-{kind}.fault.test")
    server.behave(Behaviour(garbage_first=True), "forged-garbage.fault.test")
    with server:
        yield server


@pytest.fixture(scope="module")
def daemon(fault: FaultServer) -> Iterator[RunningDaemon]:
    with dockdns("--upstream", fault.address) as running:
        yield running


def test_truncated_udp_answer_is_fetched_over_tcp(daemon: RunningDaemon,
                                                  fault: FaultServer) -> None:
    reply = ask(daemon.host, daemon.port, "tc.fault.test")
    assert not reply.flags & dns.flags.TC
    assert addresses(reply) == {"198.51.100.2"}
    assert fault.count("tc.fault.test", transport="udp") == 1
    assert fault.count("tc.fault.test", transport="tcp") == 1


def test_tcp_clients_are_forwarded_over_tcp(daemon: RunningDaemon, fault: FaultServer) -> None:
    reply = ask(daemon.host, daemon.port, "tcp.fault.test", tcp=True)
    assert addresses(reply) == {"198.51.100.3"}
    assert fault.count("tcp.fault.test", transport="tcp") == 1
    assert fault.count("tcp.fault.test", transport="udp") == 0


def test_each_client_gets_the_answer_cut_to_its_own_size(daemon: RunningDaemon) -> None:
    full = ask(daemon.host, daemon.port, "big.fault.test", use_edns=0, payload=4096)
    assert addresses(full) == set(MANY)
    assert not full.flags & dns.flags.TC
    query = dns.message.make_query("big.fault.test", "A", use_edns=False)
    wire = dns.query.udp(query, daemon.host, port=daemon.port, timeout=3,
                         ignore_trailing=False)
    assert wire.flags & dns.flags.TC
    assert len(wire.to_wire()) <= 512
    assert addresses(wire) < set(MANY)
    over_tcp = ask(daemon.host, daemon.port, "big.fault.test", tcp=True, use_edns=False)
    assert addresses(over_tcp) == set(MANY)


@pytest.mark.parametrize("kind", ["id", "question", "source", "garbage"])
def test_forged_replies_are_ignored_and_never_cached(daemon: RunningDaemon,
                                                     fault: FaultServer, kind: str) -> None:
    name = f"forged-{kind}.fault.test"
    first = ask(daemon.host, daemon.port, name)
    again = ask(daemon.host, daemon.port, name)
    assert addresses(first) == {"198.51.100.6"}
    assert addresses(again) == {"198.51.100.6"}
    assert FORGED_ADDRESS not in addresses(first) | addresses(again)
    assert fault.count(name, transport="udp") == 1


def test_identical_questions_in_flight_share_one_upstream_query(
        daemon: RunningDaemon, fault: FaultServer) -> None:
    # The upstream takes 0.5 s, so all of these are in flight together.
    with ThreadPoolExecutor(max_workers=10) as pool:
        replies = list(pool.map(lambda _: ask(daemon.host, daemon.port, "shared.fault.test"),
                                range(10)))
    assert all(addresses(reply) == {"198.51.100.4"} for reply in replies)
    assert fault.count("shared.fault.test") == 1


def test_nxdomain_and_nodata_are_cached_for_the_soa_minimum(
        daemon: RunningDaemon, fault: FaultServer) -> None:
    for _ in range(3):
        nx = ask(daemon.host, daemon.port, "missing.fault.test")
        nodata = ask(daemon.host, daemon.port, "nodata.fault.test", "A")
        assert nx.rcode() == dns.rcode.NXDOMAIN
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
        soa = nx.authority[0]
        assert soa.rdtype == dns.rdatatype.SOA and 0 < soa.ttl <= 120
    assert fault.count("missing.fault.test") == 1
    assert fault.count("nodata.fault.test", "A") == 1


def test_servfail_is_passed_on_but_never_cached(daemon: RunningDaemon,
                                                fault: FaultServer) -> None:
    for _ in range(2):
        assert ask(daemon.host, daemon.port, "servfail.fault.test").rcode() == dns.rcode.SERVFAIL
    assert fault.count("servfail.fault.test") == 2


def test_failover_skips_a_dead_upstream() -> None:
    with FaultServer(default=Behaviour(drop=True)) as dead, FaultServer() as live:
        names = [f"n{i}.failover.test" for i in range(6)]
        for name in names:
            live.add(name, "A", 300, "198.51.100.30")
        with dockdns("--upstream", dead.address, "--upstream", live.address) as daemon:
            for name in names:
                assert addresses(ask(daemon.host, daemon.port, name, timeout=4)) == \
                    {"198.51.100.30"}
            log = daemon.log()
        asked_dead = sum(dead.count(name) for name in names)
    # The first queries wait for the dead one and then fail over; once it is marked down the
    # rest go straight to the live one.
    assert 1 <= asked_dead < len(names)
    assert "does not answer" in log


def test_a_dead_upstream_is_asked_again_once_it_answers_a_probe() -> None:
    with FaultServer(default=Behaviour(drop=True)) as first, FaultServer() as second:
        for server in (first, second):
            for n in range(4):
                server.add(f"r{n}.recover.test", "A", 300, f"198.51.100.{32 + n}")
        with dockdns("--upstream", first.address, "--upstream", second.address) as daemon:
            for n in range(2):
                ask(daemon.host, daemon.port, f"r{n}.recover.test", timeout=4)
            wait_for(lambda: "does not answer" in daemon.log())
            first.behave(Behaviour())  # back to life: the next probe gets an answer
            wait_for(lambda: "answers again" in daemon.log())
            for n in range(2, 4):
                assert addresses(ask(daemon.host, daemon.port, f"r{n}.recover.test")) == \
                    {f"198.51.100.{32 + n}"}
    # The first upstream is preferred again as soon as it is back.
    assert first.count("r2.recover.test") == first.count("r3.recover.test") == 1
    assert second.count("r2.recover.test") == second.count("r3.recover.test") == 0


def test_servfail_and_refused_fail_over_to_the_next_upstream() -> None:
    with FaultServer(default=Behaviour(rcode=dns.rcode.SERVFAIL)) as failing, \
            FaultServer(default=Behaviour(rcode=dns.rcode.REFUSED)) as refusing, \
            FaultServer() as live:
        live.add("x.failover.test", "A", 300, "198.51.100.31")
        with dockdns("--upstream", failing.address, "--upstream", refusing.address,
                     "--upstream", live.address) as daemon:
            reply = ask(daemon.host, daemon.port, "x.failover.test")
        assert addresses(reply) == {"198.51.100.31"}
        assert failing.count("x.failover.test") == 1
        assert refusing.count("x.failover.test") == 1


def test_refused_by_every_upstream_is_passed_on() -> None:
    with FaultServer(default=Behaviour(rcode=dns.rcode.REFUSED)) as one, \
            FaultServer(default=Behaviour(rcode=dns.rcode.REFUSED)) as two:
        with dockdns("--upstream", one.address, "--upstream", two.address) as daemon:
            reply = ask(daemon.host, daemon.port, "no.such.test")
    assert reply.rcode() == dns.rcode.REFUSED


def test_servfail_within_the_time_budget_when_every_upstream_is_dead() -> None:
    # Six silent upstreams at 1 s each would take 6 s; the client must hear back before the 4 s
    # after which it would count the query lost.
    with FaultServer(default=Behaviour(drop=True)) as dead:
        upstreams = [arg for n in range(6)
                     for arg in ("--upstream", f"127.0.0.{n + 1}:{dead.port}" if n else
                                 dead.address)]
        with dockdns(*upstreams) as daemon:
            reply = ask(daemon.host, daemon.port, "lost.dead.test", timeout=4.0)
            tcp_reply = ask(daemon.host, daemon.port, "lost2.dead.test", tcp=True, timeout=4.0)
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert tcp_reply.rcode() == dns.rcode.SERVFAIL


def test_stale_answer_when_every_upstream_fails() -> None:
    with FaultServer() as upstream:
        upstream.add("short.stale.test", "A", 1, "198.51.100.40")
        with dockdns("--upstream", upstream.address) as daemon:
            fresh = ask(daemon.host, daemon.port, "short.stale.test")
            time.sleep(1.5)
            upstream.behave(Behaviour(drop=True))
            stale = ask(daemon.host, daemon.port, "short.stale.test", timeout=4.5)
            stale_again = ask(daemon.host, daemon.port, "short.stale.test", timeout=4.5)
    assert fresh.answer[0].ttl <= 1
    assert stale.rcode() == dns.rcode.NOERROR
    assert addresses(stale) == {"198.51.100.40"}
    assert stale.answer[0].ttl == 30
    assert addresses(stale_again) == {"198.51.100.40"}


def test_no_stale_answer_with_no_serve_stale() -> None:
    with FaultServer() as upstream:
        upstream.add("short.stale.test", "A", 1, "198.51.100.41")
        with dockdns("--upstream", upstream.address, "--no-serve-stale") as daemon:
            ask(daemon.host, daemon.port, "short.stale.test")
            time.sleep(1.5)
            upstream.behave(Behaviour(drop=True))
            reply = ask(daemon.host, daemon.port, "short.stale.test", timeout=4.5)
    assert reply.rcode() == dns.rcode.SERVFAIL


def test_cache_min_ttl_keeps_short_answers() -> None:
    with FaultServer() as upstream:
        upstream.add("short.min.test", "A", 1, "198.51.100.42")
        with dockdns("--upstream", upstream.address, "--cache-min-ttl", "60") as daemon:
            first = ask(daemon.host, daemon.port, "short.min.test")
            time.sleep(1.5)
            second = ask(daemon.host, daemon.port, "short.min.test")
    assert first.answer[0].ttl == 60
    assert 0 < second.answer[0].ttl < 60
    assert upstream.count("short.min.test") == 1


def test_max_inflight_answers_servfail_at_once_beyond_the_cap() -> None:
    with FaultServer() as upstream:
        upstream.add("slow.cap.test", "A", 300, "198.51.100.50")
        upstream.add("other.cap.test", "A", 300, "198.51.100.51")
        upstream.behave(Behaviour(delay=1.5), "slow.cap.test")
        with dockdns("--upstream", upstream.address, "--max-inflight", "1",
                     "--upstream-timeout", "3") as daemon, \
                ThreadPoolExecutor(max_workers=1) as pool:
            slow = pool.submit(ask, daemon.host, daemon.port, "slow.cap.test", timeout=4.0)
            wait_for(lambda: upstream.count("slow.cap.test") == 1)
            other = ask(daemon.host, daemon.port, "other.cap.test")
            slow_reply = slow.result()
            log = daemon.log()
    # The second question found the one allowed slot taken and was refused without waiting.
    assert other.rcode() == dns.rcode.SERVFAIL
    assert upstream.count("other.cap.test") == 0
    assert addresses(slow_reply) == {"198.51.100.50"}
    assert "--max-inflight" in log
