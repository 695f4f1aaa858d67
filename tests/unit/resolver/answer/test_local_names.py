"""Names beyond Docker's on hand-built snapshots: wildcards, per-record TTL, named SRV, names
private to one client, host.docker.internal, static records and CNAME chains (no sockets)."""

from __future__ import annotations

import asyncio
import ipaddress

import dns.message
import dns.rcode
import dns.rdatatype

from discovery.registry.model import Client, Network, Record, Snapshot, SourcePart
from discovery.registry.registry import Registry
from discovery.static.records import parse, to_records
from resolver.answer.handler import AnswerSettings, QueryHandler
from resolver.answer.local import answer_local
from resolver.answer.views import ViewTable
from resolver.dns import wire

NETS = (
    Network("front", subnets=(ipaddress.ip_network("10.0.1.0/24"),), gateways=("10.0.1.1",)),
    Network("back", subnets=(ipaddress.ip_network("10.0.2.0/24"),), gateways=("10.0.2.1",)),
)
STATIC = to_records(parse(text) for text in (
    "alias.test CNAME web", "outside.test CNAME www.example.org", "chain.test CNAME alias.test",
    "loop1.test CNAME loop2.test", "loop2.test CNAME loop1.test", "txt.test TXT \"v=spf1 -all\"",
    "mail.test MX 10 mx.test", "_sip._udp.test SRV 0 5 5060 sip.test",
    "1.1.168.192.in-addr.arpa PTR printer.test", "*.static.test A 192.0.2.9"))
SNAPSHOT = Snapshot.build(1, [SourcePart(
    networks=NETS,
    records=(
        Record(names=("web", "*.web"), ipv4=("10.0.1.2",), network="front", ptr="web.front",
               ttl=5, srv_names=(("_http._tcp", 8080),), origin="container web"),
        Record(names=("api.web",), ipv4=("10.0.1.3",), network="front", origin="container api"),
        Record(names=("*.b.web",), ipv4=("10.0.1.4",), network="front", origin="container b"),
        Record(names=("*.dev.test",), ipv4=("10.0.2.5",), network="back", origin="container d"),
        Record(names=("db.test",), ipv4=("10.9.9.9",), clients=("10.0.1.50",),
               origin="container client --add-host"),
        *STATIC,
    ),
    clients=(Client("10.0.1.50", ("front",), "client"), Client("10.0.1.60", ("front",), "other"),
             Client("10.0.2.50", ("back",), "back-client")),
)])


def ask(name: str, rdtype: str = "A", client: str = "127.0.0.1",
        host_names: bool = True) -> tuple[dns.message.Message | None, str | None]:
    view = ViewTable(SNAPSHOT, host_names=host_names).for_client(client)
    query = wire.parse_query(dns.message.make_query(name, rdtype).to_wire())
    local = answer_local(SNAPSHOT, view.networks, query, 600, None, view.private, view.host)
    if local is None:
        return None, None
    return dns.message.from_wire(wire.build_reply(
        query, local.rcode, list(local.answers), 65535, list(local.additional))), local.chase


def rdatas(name: str, rdtype: str = "A", client: str = "127.0.0.1") -> set[str]:
    reply, _ = ask(name, rdtype, client)
    assert reply is not None, name
    return {rd.to_text() for rrset in reply.answer for rd in rrset}


def test_wildcards_most_specific_owner_wins_and_exact_beats_them() -> None:
    assert rdatas("x.web") == {"10.0.1.2"}
    assert rdatas("x.y.web") == {"10.0.1.2"}
    assert rdatas("api.web") == {"10.0.1.3"}  # exact
    assert rdatas("c.b.web") == {"10.0.1.4"}  # *.b.web is more specific than *.web
    assert rdatas("b.web") == {"10.0.1.2"}  # *.b.web does not cover b.web itself
    assert rdatas("a.dev.test") == {"10.0.2.5"}
    assert ask("dev.test")[0] is None
    assert ask("x.dev.test", client="10.0.1.50")[0] is None  # on a network it does not see
    assert rdatas("q.static.test") == {"192.0.2.9"}


def test_record_ttl_in_forward_and_srv_answers() -> None:
    reply, _ = ask("web")
    assert reply is not None and reply.answer[0].ttl == 5
    reply, _ = ask("api.web")
    assert reply is not None and reply.answer[0].ttl == 600


def test_srv_from_labels_with_target_addresses() -> None:
    reply, _ = ask("_http._tcp.web", "SRV", client="10.0.1.50")
    assert reply is not None
    assert {rd.to_text() for rr in reply.answer for rd in rr} == {"0 0 8080 web.front."}
    assert {rd.to_text() for rr in reply.additional for rd in rr} == {"10.0.1.2"}
    assert ask("_nope._tcp.txt.test", "SRV")[0] is None  # a service nobody published
    reply, _ = ask("_nope._tcp.web", "SRV")  # below a wildcard owner: the wildcard's answer
    assert reply is not None and not reply.answer


def test_private_names_only_for_their_client() -> None:
    assert rdatas("db.test", client="10.0.1.50") == {"10.9.9.9"}
    assert ask("db.test", client="10.0.1.60")[0] is None
    assert ask("db.test")[0] is None
    table = ViewTable(SNAPSHOT)
    assert table.for_client("10.0.1.50") is not table.for_client("10.0.1.60")  # own memo


def test_host_name_is_the_clients_gateway() -> None:
    assert rdatas("host.docker.internal", client="10.0.1.50") == {"10.0.1.1"}
    assert rdatas("host.docker.internal", client="10.0.2.50") == {"10.0.2.1"}
    assert rdatas("host.docker.internal") == {"127.0.0.1"}
    assert rdatas("host.docker.internal", "AAAA") == {"::1"}
    assert ask("host.docker.internal", client="10.0.1.50", host_names=False)[0] is None


def test_static_cname_chased_inside_and_outside() -> None:
    reply, chase = ask("alias.test", client="10.0.1.50")
    assert reply is not None and chase is None
    assert [rr.rdtype for rr in reply.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert rdatas("chain.test", client="10.0.1.50") == {"alias.test.", "web.", "10.0.1.2"}
    reply, chase = ask("outside.test")
    assert chase == "www.example.org" and reply is not None and len(reply.answer) == 1
    reply, chase = ask("loop1.test")  # a loop ends, answered with what it went through
    assert reply is not None and chase is None
    assert [rr.to_text() for rr in reply.answer] == ["loop1.test. 600 IN CNAME loop2.test.",
                                                     "loop2.test. 600 IN CNAME loop1.test."]
    reply, chase = ask("alias.test", "CNAME")
    assert chase is None and rdatas("alias.test", "CNAME") == {"web."}


def test_static_data_types() -> None:
    assert rdatas("txt.test", "TXT") == {'"v=spf1 -all"'}
    assert rdatas("mail.test", "MX") == {"10 mx.test."}
    assert rdatas("_sip._udp.test", "SRV") == {"0 5 5060 sip.test."}
    assert rdatas("1.1.168.192.in-addr.arpa", "PTR") == {"printer.test."}
    reply, _ = ask("txt.test", "A")
    assert reply is not None and reply.rcode() == dns.rcode.NOERROR and not reply.answer


def test_memo_serves_wildcard_and_private_answers() -> None:
    registry = Registry()
    registry.update("test", SourcePart(networks=NETS, records=SNAPSHOT.records,
                                       clients=tuple(SNAPSHOT.clients.values())))
    handler = QueryHandler(registry, AnswerSettings())

    def both(name: str, client: str) -> tuple[bytes | None, bytes | None]:
        packet = dns.message.make_query(name, "A").to_wire()
        full = asyncio.run(handler.answer(packet, client, False))
        return full, handler.answer_fast(packet, client, False)

    for name, client in (("x.y.web", "127.0.0.1"), ("db.test", "10.0.1.50"),
                         ("host.docker.internal", "10.0.1.50"), ("alias.test", "127.0.0.1")):
        full, fast = both(name, client)
        assert full is not None and fast == full, name
    assert handler.answer_fast(dns.message.make_query("db.test", "A").to_wire(), "10.0.1.60",
                               False) is None
