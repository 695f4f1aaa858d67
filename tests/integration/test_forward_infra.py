"""The upstream infrastructure cache over real sockets: an upstream that is down costs no wait,
an ICMP error fails an attempt at once, and a recovered upstream is noticed by the probes. Unbound
is the reference for a dead forwarder: once it has marked it, it answers SERVFAIL at once."""

from __future__ import annotations

import socket
import time

import dns.exception
import dns.message
import dns.rcode

from resolver.forward.forwarder import ANSWER_BUDGET
from tests.support.daemon import RunningDaemon, dockdns
from tests.support.net import addresses, ask, free_port
from tests.support.scrape import scrape, value
from tests.support.unbound import forwarding_unbound
from tests.support.upstream import Behaviour, FaultServer
from tests.support.wait import wait_for

NAMES = 100
# 100 names that each waited for the budget would take 350 s; these must not wait it at all.
NOT_WAITING = 30.0




def mark_down(daemon: RunningDaemon) -> None:
    """Two names that time out mark the only upstream down."""
    for n in range(2):
        assert ask(daemon.host, daemon.port, f"warm{n}.dead.infra",
                   timeout=ANSWER_BUDGET + 1).rcode() == dns.rcode.SERVFAIL
    wait_for(lambda: "does not answer" in daemon.log())


def rcodes_of(port: int, names: list[str]) -> tuple[list[int], float]:
    start = time.monotonic()
    rcodes = [ask("127.0.0.1", port, name, timeout=ANSWER_BUDGET + 1).rcode() for name in names]
    return rcodes, time.monotonic() - start


def unbound_marked(port: int) -> bool:
    try:
        return ask("127.0.0.1", port, f"probe{time.monotonic_ns()}.dead.infra",
                   timeout=3).rcode() == dns.rcode.SERVFAIL
    except dns.exception.Timeout:
        return False


def test_new_names_fail_at_once_with_the_only_upstream_down_as_unbound_does() -> None:
    names = [f"n{n}.dead.infra" for n in range(NAMES)]
    with FaultServer(default=Behaviour(drop=True)) as dead:
        with dockdns("--upstream", dead.address) as daemon:
            mark_down(daemon)
            asked_before = len(dead.queries)
            ours, our_time = rcodes_of(daemon.port, names)
            asked_during = len(dead.queries) - asked_before
            assert daemon.metrics_port is not None
            samples = scrape(daemon.metrics_port)
            log = daemon.log()
        with forwarding_unbound(dead.address) as unbound_port:
            wait_for(lambda: unbound_marked(unbound_port), timeout=60)
            theirs, _ = rcodes_of(unbound_port, names)
    assert ours == [dns.rcode.SERVFAIL] * NAMES
    assert theirs == [dns.rcode.SERVFAIL] * NAMES
    # Not one of them waited for the upstream: only the background probes asked it.
    assert our_time < NOT_WAITING
    assert not any(dead.count(name) for name in names)
    assert asked_during <= our_time / 1.0 + 1  # probes: at most one a second
    assert "does not answer" in log
    assert value(samples, "dockdns_forward_events_total", event="fast_failure") == NAMES
    assert value(samples, "dockdns_upstream_down") == 1


def test_stale_answers_while_down_and_fresh_ones_once_a_probe_finds_it_back() -> None:
    with FaultServer() as upstream:
        upstream.add("kept.back.infra", "A", 1, "198.51.100.60")
        upstream.add("later.back.infra", "A", 300, "198.51.100.61")
        with dockdns("--upstream", upstream.address) as daemon:
            ask(daemon.host, daemon.port, "kept.back.infra")
            upstream.behave(Behaviour(drop=True))
            time.sleep(1.2)
            mark_down(daemon)
            stale = [ask(daemon.host, daemon.port, "kept.back.infra") for _ in range(5)]
            upstream.behave(Behaviour())
            wait_for(lambda: "answers again" in daemon.log())
            back = ask(daemon.host, daemon.port, "later.back.infra")
            # A stale hit refreshes in the background: fresh answers follow within seconds (not
            # after the 30 s stale answers would otherwise be kept).
            wait_for(lambda: ask(daemon.host, daemon.port, "kept.back.infra").answer[0].ttl
                     <= 1, timeout=5)
    assert all(addresses(reply) == {"198.51.100.60"} for reply in stale)
    assert all(reply.answer[0].ttl == 30 for reply in stale)
    assert addresses(back) == {"198.51.100.61"}


def test_a_closed_port_fails_the_attempt_at_once_not_as_a_timeout() -> None:
    closed = f"127.0.0.1:{free_port()}"
    with FaultServer() as live:
        for n in range(4):
            live.add(f"n{n}.icmp.infra", "A", 300, "198.51.100.62")
        with dockdns("--upstream", closed, "--upstream", live.address,
                     "--upstream-timeout", "3") as daemon:
            replies = [ask(daemon.host, daemon.port, f"n{n}.icmp.infra", timeout=2.5)
                       for n in range(4)]
            assert daemon.metrics_port is not None
            samples = scrape(daemon.metrics_port)
            log = daemon.log()
    # An attempt to the closed port that waited its 3 s would have cost the 2.5 s client its
    # answer; each got it from the second upstream.
    assert all(addresses(reply) == {"198.51.100.62"} for reply in replies)
    unreachable = value(samples, "dockdns_upstream_requests_total", upstream=closed,
                        outcome="unreachable")
    assert unreachable == 2  # then it is down and skipped
    assert value(samples, "dockdns_upstream_requests_total", upstream=closed,
                 outcome="timeout") == 0
    assert "unreachable" in log


def flood(sock: socket.socket, port: int, names: list[str]) -> None:
    for n, name in enumerate(names):
        sock.sendto(dns.message.make_query(name, "A", id=n).to_wire(), ("127.0.0.1", port))


def replies_to(sock: socket.socket, count: int) -> list[dns.message.Message]:
    replies = []
    sock.settimeout(ANSWER_BUDGET + 2)
    while len(replies) < count:
        try:
            replies.append(dns.message.from_wire(sock.recv(4096)))
        except TimeoutError:
            break
    return replies


def asked(server: FaultServer, names: list[str]) -> int:
    """How many of ``names`` ``server`` was asked (its other queries are probes)."""
    return sum(server.count(name) for name in names)


def test_a_dead_zone_cannot_starve_a_healthy_one() -> None:
    # Two destination groups whose upstreams never answer take their share of the slots each
    # (half of 40), which fills --max-inflight; a healthy zone's questions still get answers:
    # the first jostles out the oldest waiting question.
    dead_names = [f"n{n}.default.infra" for n in range(30)]
    zone_names = [f"n{n}.slow.infra" for n in range(30)]
    good_names = [f"n{n}.good.infra" for n in range(30)]
    with FaultServer(default=Behaviour(drop=True)) as dead, \
            FaultServer(default=Behaviour(drop=True)) as slow, FaultServer() as good:
        for name in good_names:
            good.add(name, "A", 300, "198.51.100.63")
        with dockdns("--upstream", dead.address, "--forward-zone", f"slow.infra={slow.address}",
                     "--forward-zone", f"good.infra={good.address}", "--max-inflight", "40",
                     "--upstream-timeout", "3") as daemon, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            flood(sock, daemon.port, dead_names + zone_names)
            wait_for(lambda: asked(dead, dead_names) == asked(slow, zone_names) == 20)
            time.sleep(0.3)  # older than the jostle threshold (JOSTLE_AFTER)
            answered = [addresses(ask(daemon.host, daemon.port, name, timeout=2))
                        for name in good_names]
            flooded = replies_to(sock, len(dead_names) + len(zone_names))
    assert answered == [{"198.51.100.63"}] * len(good_names)
    # Every flooded question got its answer too: SERVFAIL beyond its group's share, when
    # jostled, or when its upstream stayed silent.
    assert len(flooded) == len(dead_names) + len(zone_names)
    assert {reply.rcode() for reply in flooded} == {dns.rcode.SERVFAIL}
    assert asked(dead, dead_names) == asked(slow, zone_names) == 20


def test_prefetch_an_answer_asked_for_late_in_its_ttl_is_refreshed_in_the_background() -> None:
    with FaultServer() as upstream:
        upstream.add("busy.prefetch.infra", "A", 4, "198.51.100.64")
        with dockdns("--upstream", upstream.address) as daemon:
            start = time.monotonic()
            # Asked every half second: after the first, every answer comes from the memo (its
            # renewals), never from the cache stage, until the TTL's last tenth.
            for n in range(9):
                # The last at 3.75 s, within the TTL's last tenth (from 3.6 s).
                time.sleep(max(0.0, start + min(n * 0.5, 3.75) - time.monotonic()))
                cached = ask(daemon.host, daemon.port, "busy.prefetch.infra")
                assert addresses(cached) == {"198.51.100.64"}
            wait_for(lambda: upstream.count("busy.prefetch.infra") == 2, timeout=5)
            time.sleep(max(0.0, start + 4.5 - time.monotonic()))  # the first answer expired
            after = ask(daemon.host, daemon.port, "busy.prefetch.infra")
            asked = upstream.count("busy.prefetch.infra")
            assert daemon.metrics_port is not None
            prefetches = value(scrape(daemon.metrics_port), "dockdns_forward_events_total",
                               event="prefetch")
    # The refreshed answer was in the cache before the old one expired: no client waited.
    assert addresses(after) == {"198.51.100.64"}
    assert after.answer[0].ttl >= 3
    assert asked == 2
    assert prefetches == 1
