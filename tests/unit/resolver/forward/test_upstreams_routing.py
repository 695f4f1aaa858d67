"""Which upstream a name goes to: conditional zones (longest wins) and the self-loop filter."""

from __future__ import annotations

from pathlib import Path

import dns.rcode

from tests.support.daemon import dockdns
from tests.support.net import addresses, ask, free_port
from tests.support.upstream import FaultServer

NAMES = ("www.corp.test", "build.dev.corp.test", "www.example.test", "x.notcorp.test",
         "4.3.2.10.in-addr.arpa")


def serving(address: str) -> FaultServer:
    """A fault server answering every test name with ``address`` (A) or a PTR."""
    server = FaultServer()
    for name in NAMES:
        if name.endswith(".arpa"):
            server.add(name, "PTR", 300, f"host-{address}.test.")
        else:
            server.add(name, "A", 300, address)
    return server


def test_longest_matching_zone_wins() -> None:
    with serving("192.0.2.1") as default, serving("192.0.2.2") as corp, \
            serving("192.0.2.3") as dev, serving("192.0.2.4") as reverse:
        with dockdns("--upstream", default.address,
                     "--forward-zone", f"corp.test={corp.address}",
                     "--forward-zone", f"Dev.Corp.Test.={dev.address}",
                     "--forward-zone", f"10.in-addr.arpa={reverse.address}") as daemon:
            answered = {name: addresses(ask(daemon.host, daemon.port, name))
                        for name in NAMES if not name.endswith(".arpa")}
            ptr = ask(daemon.host, daemon.port, "4.3.2.10.in-addr.arpa", "PTR")
            upper = ask(daemon.host, daemon.port, "WWW.CORP.TEST")
    assert answered == {
        "www.corp.test": {"192.0.2.2"},
        "build.dev.corp.test": {"192.0.2.3"},
        "www.example.test": {"192.0.2.1"},
        "x.notcorp.test": {"192.0.2.1"},  # a zone matches whole labels, not string suffixes
    }
    assert addresses(upper) == {"192.0.2.2"}
    assert [str(r) for r in ptr.answer[0]] == ["host-192.0.2.4.test."]
    assert corp.count("www.corp.test") == 1 and default.count("www.corp.test") == 0
    assert dev.count("build.dev.corp.test") == 1 and corp.count("build.dev.corp.test") == 0
    assert default.count("www.example.test") == 1


def test_a_zone_with_two_servers_fails_over_between_them() -> None:
    with serving("192.0.2.5") as second:
        # The default upstream and the first zone server are ports where nothing listens.
        nothing = f"127.0.0.1:{free_port()}"
        with dockdns("--upstream", nothing,
                     "--forward-zone", f"corp.test={nothing}",
                     "--forward-zone", f"corp.test={second.address}") as daemon:
            reply = ask(daemon.host, daemon.port, "www.corp.test", timeout=4)
    assert addresses(reply) == {"192.0.2.5"}


def test_an_upstream_that_is_dockdns_itself_is_dropped() -> None:
    port = free_port()
    with serving("192.0.2.6") as live:
        with dockdns("--upstream", f"127.0.0.1:{port}", "--upstream", live.address,
                     port=port) as daemon:
            reply = ask(daemon.host, daemon.port, "www.example.test")
            log = daemon.log()
    assert addresses(reply) == {"192.0.2.6"}
    assert f"upstream 127.0.0.1:{port} is one of dockdns's own listen addresses" in log


def test_only_itself_as_upstream_gives_servfail_not_a_loop() -> None:
    port = free_port()
    with dockdns("--upstream", f"127.0.0.1:{port}", "--forward-zone", f"corp.test=127.0.0.1:{port}",
                 port=port) as daemon:
        reply = ask(daemon.host, daemon.port, "www.example.test")
        zoned = ask(daemon.host, daemon.port, "www.corp.test")
        log = daemon.log()
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert zoned.rcode() == dns.rcode.SERVFAIL
    assert "no upstream servers" in log


def test_an_ipv6_upstream() -> None:
    with FaultServer(host="::1") as upstream:
        upstream.add("v6.example.test", "AAAA", 300, "2001:db8::60")
        upstream.add("v6tcp.example.test", "AAAA", 300, "2001:db8::61")
        with dockdns("--upstream", upstream.address) as daemon:
            udp = ask(daemon.host, daemon.port, "v6.example.test", "AAAA")
            tcp = ask(daemon.host, daemon.port, "v6tcp.example.test", "AAAA", tcp=True)
    assert addresses(udp) == {"2001:db8::60"} and addresses(tcp) == {"2001:db8::61"}
    assert upstream.count("v6.example.test", transport="udp") == 1
    assert upstream.count("v6tcp.example.test", transport="tcp") == 1


PRIVATE_PTR = "5.0.17.172.in-addr.arpa"
PUBLIC_PTR = "7.100.51.198.in-addr.arpa"


def ptr_server() -> FaultServer:
    server = FaultServer()
    server.add(PRIVATE_PTR, "PTR", 300, "private.upstream.test.")
    server.add(PUBLIC_PTR, "PTR", 300, "public.upstream.test.")
    return server


def test_private_reverse_lookups_stay_here(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("172.17.0.9 known-private\n")
    with ptr_server() as upstream:
        with dockdns("--upstream", upstream.address, "--hosts-file", str(hosts)) as daemon:
            private = ask(daemon.host, daemon.port, PRIVATE_PTR, "PTR")
            loopback = ask(daemon.host, daemon.port, "1.0.0.127.in-addr.arpa", "PTR", tcp=True)
            ula = ask(daemon.host, daemon.port, "1.0.0.0.d.f.ip6.arpa", "SOA")
            known = ask(daemon.host, daemon.port, "9.0.17.172.in-addr.arpa", "PTR")
            public = ask(daemon.host, daemon.port, PUBLIC_PTR, "PTR")
        assert private.rcode() == loopback.rcode() == ula.rcode() == dns.rcode.NXDOMAIN
        assert upstream.count(PRIVATE_PTR) == 0 and upstream.count("1.0.0.127.in-addr.arpa") == 0
        # The registry still answers its own private addresses; public ones are forwarded.
        assert [str(r) for r in known.answer[0]] == ["known-private."]
        assert [str(r) for r in public.answer[0]] == ["public.upstream.test."]
        assert upstream.count(PUBLIC_PTR) == 1


def test_private_reverse_forwarded_when_routed_or_allowed() -> None:
    with ptr_server() as upstream:
        with dockdns("--upstream", upstream.address,
                     "--forward-zone", f"17.172.in-addr.arpa={upstream.address}") as daemon:
            routed = ask(daemon.host, daemon.port, PRIVATE_PTR, "PTR")
        assert [str(r) for r in routed.answer[0]] == ["private.upstream.test."]
        with dockdns("--upstream", upstream.address, "--no-bogus-priv") as daemon:
            allowed = ask(daemon.host, daemon.port, PRIVATE_PTR, "PTR")
        assert [str(r) for r in allowed.answer[0]] == ["private.upstream.test."]
        assert upstream.count(PRIVATE_PTR) == 2
