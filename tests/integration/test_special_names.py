"""Special-use names, local reverse zones, CHAOS and odd questions, asked of dockdns and of a real
Unbound (tests/support/unbound.py) in the same run: the same rcode and the same records (TTLs
aside). Both forward what they do not hold to the same loopback fault server, which counts
what reaches it: a special name must never get there.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from resolver.forward.special_names import SpecialSettings
from tests.support.daemon import RunningDaemon, dockdns
from tests.support.net import ask, free_port, udp_exchange
from tests.support.unbound import Unbound, unbound
from tests.support.upstream import FaultServer

IDENTITY = "protocol-test-identity"
VERSION = SpecialSettings().version


@dataclass
class Servers:
    dockdns: RunningDaemon
    unbound: Unbound
    upstream: FaultServer


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with FaultServer() as upstream:
        upstream.add("ext.example", "A", 300, "198.51.100.7")
        with unbound(upstream.address, f'identity: "{IDENTITY}"', f'version: "{VERSION}"') as ub, \
                dockdns("--special-names", "--upstream", upstream.address,
                        "--identity", IDENTITY) as daemon:
            yield Servers(daemon, ub, upstream)


def exchange(host: str, port: int, query: dns.message.Message,
             tcp: bool = False) -> dns.message.Message:
    if tcp:
        return dns.query.tcp(query, host, port=port, timeout=5)
    return dns.query.udp(query, host, port=port, timeout=5)


def records(section: list[dns.rrset.RRset]) -> set[tuple[str, str, str, str]]:
    """A section without its TTLs: (owner, class, type, rdata) per record, names lowered."""
    return {(rrset.name.to_text().lower(), dns.rdataclass.to_text(rrset.rdclass),
             dns.rdatatype.to_text(rrset.rdtype), rdata.to_text().lower())
            for rrset in section for rdata in rrset}


def outcome(reply: dns.message.Message) -> tuple[str, set[tuple[str, str, str, str]],
                                                 set[tuple[str, str, str, str]]]:
    return dns.rcode.to_text(reply.rcode()), records(reply.answer), records(reply.authority)


SPECIAL_QUESTIONS = [
    ("localhost", "A"), ("localhost", "AAAA"), ("LocalHost", "A"), ("localhost", "MX"),
    ("localhost", "SOA"), ("localhost", "NS"), ("localhost", "ANY"), ("foo.localhost", "A"),
    ("foo.localhost", "AAAA"), ("a.b.localhost", "A"), ("foo.localhost", "TXT"),
    ("x.invalid", "A"), ("invalid", "SOA"), ("x.test", "A"), ("test", "NS"), ("test", "TXT"),
    ("x.onion", "AAAA"), ("x.home.arpa", "A"), ("home.arpa", "SOA"),
    ("1.0.0.127.in-addr.arpa", "PTR"), ("1.0.0.127.in-addr.arpa", "A"),
    ("2.0.0.127.in-addr.arpa", "PTR"), ("127.in-addr.arpa", "SOA"), ("127.in-addr.arpa", "NS"),
    ("10.in-addr.arpa", "SOA"), ("10.in-addr.arpa", "NS"), ("10.in-addr.arpa", "A"),
    ("5.0.0.10.in-addr.arpa", "PTR"), ("3.2.16.172.in-addr.arpa", "PTR"),
    ("31.172.in-addr.arpa", "SOA"), ("1.1.168.192.in-addr.arpa", "PTR"),
    ("4.3.254.169.in-addr.arpa", "PTR"), ("1.2.0.192.in-addr.arpa", "PTR"),
    ("255.255.255.255.in-addr.arpa", "PTR"),
    ("1." + "0." * 31 + "ip6.arpa", "PTR"), ("1." + "0." * 31 + "ip6.arpa", "SOA"),
    ("0." * 32 + "ip6.arpa", "PTR"), ("d.f.ip6.arpa", "SOA"), ("1.d.f.ip6.arpa", "PTR"),
    ("8.e.f.ip6.arpa", "SOA"), ("b.e.f.ip6.arpa", "NS"),
    ("1.8.b.d.0.1.0.0.2.ip6.arpa", "PTR"),
]


@pytest.mark.parametrize(("name", "rdtype"), SPECIAL_QUESTIONS)
def test_special_names_answer_as_unbound_does(servers: Servers, name: str, rdtype: str) -> None:
    query = dns.message.make_query(name, rdtype)
    ours = exchange(servers.dockdns.host, servers.dockdns.port, query)
    theirs = exchange(servers.unbound.host, servers.unbound.port, query)
    assert outcome(ours) == outcome(theirs)
    assert ours.flags & dns.flags.AA
    if ours.rcode() == dns.rcode.NXDOMAIN or not ours.answer:
        # RFC 2308: a negative answer a cache can keep carries the zone's SOA.
        assert [rrset.rdtype for rrset in ours.authority] == [dns.rdatatype.SOA]
    assert servers.upstream.count(name) == 0


def test_local_is_nxdomain_with_soa_and_never_forwarded(servers: Servers) -> None:
    # A deliberate difference: Unbound forwards .local; no unicast server can know those names.
    reply = ask(servers.dockdns.host, servers.dockdns.port, "printer.local")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert records(reply.authority) == {
        ("local.", "IN", "SOA", "localhost. nobody.invalid. 1 3600 1200 604800 10800")}
    assert servers.upstream.count("printer.local") == 0


CHAOS_QUESTIONS = [("version.bind", "TXT"), ("version.server", "TXT"), ("id.server", "TXT"),
                   ("hostname.bind", "TXT"), ("version.bind", "ANY"), ("version.bind", "A"),
                   ("authors.bind", "TXT"), ("foo.bar", "TXT")]


@pytest.mark.parametrize(("name", "rdtype"), CHAOS_QUESTIONS)
def test_chaos_answers_as_unbound_does(servers: Servers, name: str, rdtype: str) -> None:
    query = dns.message.make_query(name, rdtype, "CH")
    ours = exchange(servers.dockdns.host, servers.dockdns.port, query)
    theirs = exchange(servers.unbound.host, servers.unbound.port, query)
    assert outcome(ours) == outcome(theirs)
    assert servers.upstream.count(name) == 0


def test_hidden_identity_and_version_are_refused() -> None:
    with FaultServer() as upstream, dockdns("--upstream", upstream.address, "--hide-identity",
                                           "--hide-version") as daemon:
        for name in ("version.bind", "version.server", "id.server", "hostname.bind"):
            reply = ask(daemon.host, daemon.port, name, "TXT", rdclass="CH")
            assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
            assert upstream.count(name) == 0
        # Special names are off here (the harness's environment); CHAOS is never forwarded.
        assert ask(daemon.host, daemon.port, "x.test").rcode() == dns.rcode.REFUSED
        assert upstream.count("x.test") == 1


def test_no_special_names_forwards_them_and_a_forward_zone_wins() -> None:
    with FaultServer() as upstream, FaultServer() as zone_server:
        upstream.add("localhost", "A", 300, "192.0.2.55")
        zone_server.add("www.corp.test", "A", 300, "192.0.2.80")
        with dockdns("--no-special-names", "--upstream", upstream.address) as off:
            reply = ask(off.host, off.port, "localhost")
            assert {r.to_text() for rrset in reply.answer for r in rrset} == {"192.0.2.55"}
            assert upstream.count("localhost") == 1
        with dockdns("--special-names", "--upstream", upstream.address,
                     "--forward-zone", f"corp.test={zone_server.address}") as on:
            reply = ask(on.host, on.port, "www.corp.test")
            assert {r.to_text() for rrset in reply.answer for r in rrset} == {"192.0.2.80"}
            assert ask(on.host, on.port, "other.test").rcode() == dns.rcode.NXDOMAIN
            assert zone_server.count("other.test") == upstream.count("other.test") == 0


def test_special_names_answer_with_the_only_upstream_dead() -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    with dockdns("--special-names", "--upstream", dead) as daemon:
        reply = ask(daemon.host, daemon.port, "localhost", timeout=1.0)
        assert {r.to_text() for rrset in reply.answer for r in rrset} == {"127.0.0.1"}


# --- odd questions: zone transfers, meta types, trailing bytes, FORMERR with OPT ----------------


def raw_query(name: str, qtype: int, edns: bool = True, qid: int = 0x1234) -> bytes:
    question = dns.name.from_text(name).to_wire() + struct.pack("!HH", qtype, 1)
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0) if edns else b""
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0) + question + opt


def raw_reply(host: str, port: int, packet: bytes) -> bytes:
    reply = udp_exchange(host, port, packet, timeout=5)
    assert reply is not None, "no reply"
    return reply


@pytest.mark.parametrize(("name", "rdtype", "tcp"), [
    ("localhost", "AXFR", True), ("x.test", "IXFR", False), ("ext.example", "AXFR", True),
    ("ext.example", "IXFR", False)])
def test_zone_transfers_are_refused_as_by_unbound(servers: Servers, name: str, rdtype: str,
                                                  tcp: bool) -> None:
    query = dns.message.make_query(name, rdtype)
    ours = exchange(servers.dockdns.host, servers.dockdns.port, query, tcp)
    theirs = exchange(servers.unbound.host, servers.unbound.port, query, tcp)
    assert ours.rcode() == theirs.rcode() == dns.rcode.REFUSED
    assert servers.upstream.count(name, rdtype) == 0


@pytest.mark.parametrize("qtype", [41, 249, 250, 253, 254, 128, 248])
def test_meta_types_as_the_question_are_formerr_with_opt(servers: Servers, qtype: int) -> None:
    packet = raw_query("ext.example", qtype)
    for host, port in ((servers.dockdns.host, servers.dockdns.port),
                       (servers.unbound.host, servers.unbound.port)):
        reply = dns.message.from_wire(raw_reply(host, port, packet))
        assert reply.rcode() == dns.rcode.FORMERR
        assert reply.edns == 0, "the FORMERR keeps the client's OPT"
    assert servers.upstream.count("ext.example", dns.rdatatype.to_text(qtype)) == 0


@pytest.mark.parametrize("edns", [True, False])
def test_trailing_bytes_are_tolerated_as_by_unbound(servers: Servers, edns: bool) -> None:
    for name in ("localhost", "ext.example"):
        packet = raw_query(name, 1, edns) + b"\x00\x01\x02junk"
        for host, port in ((servers.dockdns.host, servers.dockdns.port),
                           (servers.unbound.host, servers.unbound.port)):
            reply = dns.message.from_wire(raw_reply(host, port, packet))
            assert reply.rcode() == dns.rcode.NOERROR and reply.answer
            assert (reply.edns == 0) == edns


def test_formerr_for_a_broken_record_keeps_the_opt(servers: Servers) -> None:
    # OPT first, then an additional record cut short: FORMERR, with our OPT back.
    packet = bytearray(raw_query("ext.example", 1))
    struct.pack_into("!H", packet, 10, 2)
    packet += b"\x00\x00\x01\x00"
    reply = dns.message.from_wire(raw_reply(servers.dockdns.host, servers.dockdns.port,
                                            bytes(packet)))
    assert reply.rcode() == dns.rcode.FORMERR and reply.edns == 0


def test_a_label_holding_a_dot_is_not_two_labels(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("10.7.7.7 host1.lan\n")
    with FaultServer() as upstream, dockdns("--hosts-file", str(hosts),
                                           "--upstream", upstream.address) as daemon:
        assert {r.to_text() for rrset in ask(daemon.host, daemon.port, "host1.lan").answer
                for r in rrset} == {"10.7.7.7"}
        one_label = dns.name.Name([b"host1.lan", b""])
        query = dns.message.make_query(one_label, "A")
        reply = dns.query.udp(query, daemon.host, port=daemon.port, timeout=5)
        assert not reply.answer and reply.rcode() == dns.rcode.REFUSED  # the upstream's word
        # (Loop-detection probes aside: resolver/forward/loop.py asks each upstream at start.)
        asked = [q for q in upstream.queries if not q.name.endswith(".dockdns-loop.invalid")]
        assert len(asked) == 1 and asked[0].name == "host1\\.lan"


def test_chaos_over_tcp(servers: Servers) -> None:
    reply = ask(servers.dockdns.host, servers.dockdns.port, "id.server", "TXT", tcp=True,
                rdclass="CH")
    assert [r.to_text() for rrset in reply.answer for r in rrset] == [f'"{IDENTITY}"']
