"""Docker-compatible answer logic on hand-built snapshots (no sockets)."""

from __future__ import annotations

import asyncio

import dns.message
import dns.rcode
import dns.rdatatype

from discovery.registry.model import SCOPE_SWARM, Client, Network, Record, Snapshot, SourcePart
from discovery.registry.registry import Registry
from resolver.answer.handler import QueryHandler
from resolver.answer.local import answer_local
from resolver.answer.settings import AnswerSettings
from resolver.answer.views import ViewTable
from resolver.dns import wire

NETS = (
    Network("front", subnets=()),
    Network("back"),
    Network("bridge", default_bridge=True),
    Network("private", internal=True),
    Network("ovl", scope=SCOPE_SWARM),
)


def container(name: str, network: str, ipv4: str, *aliases: str, ipv6: str = "") -> Record:
    return Record(names=(name, *aliases), ipv4=(ipv4,), ipv6=(ipv6,) if ipv6 else (),
                  network=network, ptr=f"{name}.{network}", origin=f"container {name}",
                  source="docker")


SNAPSHOT = Snapshot.build(1, [SourcePart(
    networks=NETS,
    records=(
        container("web1", "front", "10.0.1.2", "web", "abcdef012345"),
        container("web2", "front", "10.0.1.3", "web"),
        container("web1", "back", "10.0.2.2", "web"),
        container("db", "back", "10.0.2.9", "database", ipv6="fd00::9"),
        container("old", "bridge", "172.17.0.2"),
        container("vault", "private", "10.0.3.2"),
        container("svc", "ovl", "10.0.9.2"),
        container("web", "ovl", "10.0.9.3"),
        Record(names=("printer", "lp"), ipv4=("192.0.2.5",), ptr="printer", origin="hosts:1"),
    ),
    clients=(
        Client("10.0.1.50", ("front",), "client-front"),
        Client("10.0.2.50", ("back", "front"), "client-both"),
        Client("10.0.3.50", ("private",), "client-internal"),
        Client("172.17.0.50", ("bridge",), "client-bridge"),
        Client("10.0.9.50", ("ovl", "front"), "client-ovl"),
    ),
)])


def ask(name: str, rdtype: str = "A", client: str = "127.0.0.1",
        domain: str | None = None, snapshot: Snapshot = SNAPSHOT,
        default_bridge_names: bool = False) -> dns.message.Message | None:
    view = ViewTable(snapshot, default_bridge_names).for_client(client)
    query = wire.parse_query(dns.message.make_query(name, rdtype).to_wire())
    local = answer_local(snapshot, view.networks, query, 600, domain)
    if local is None:
        return None
    return dns.message.from_wire(
        wire.build_reply(query, local.rcode, list(local.answers), 65535, list(local.additional)))


def addrs(reply: dns.message.Message | None) -> set[str]:
    assert reply is not None
    return {rd.to_text() for rrset in reply.answer for rd in rrset}


def test_name_on_the_clients_network() -> None:
    assert addrs(ask("web1", client="10.0.1.50")) == {"10.0.1.2"}
    assert addrs(ask("web", client="10.0.1.50")) == {"10.0.1.2", "10.0.1.3"}


def test_first_network_by_name_wins_for_a_client_on_two() -> None:
    # Docker sorts a sandbox's endpoints by network name: "back" before "front".
    assert addrs(ask("web1", client="10.0.2.50")) == {"10.0.2.2"}
    assert addrs(ask("web1.front", client="10.0.2.50")) == {"10.0.1.2"}


def test_swarm_scoped_networks_come_first() -> None:
    assert addrs(ask("web", client="10.0.9.50")) == {"10.0.9.3"}


def test_other_networks_are_invisible_to_a_container() -> None:
    assert ask("db", client="10.0.1.50") is None
    assert ask("db.back", client="10.0.1.50") is None


def test_host_clients_see_every_user_defined_network() -> None:
    assert addrs(ask("db")) == {"10.0.2.9"}
    assert addrs(ask("vault")) == {"10.0.3.2"}


def test_default_bridge_gives_no_names_unless_asked() -> None:
    assert ask("old") is None
    assert ask("web1", client="172.17.0.50") is None
    assert addrs(ask("old", default_bridge_names=True)) == {"172.17.0.2"}


def test_internal_only_clients_do_not_forward() -> None:
    table = ViewTable(SNAPSHOT)
    assert not table.for_client("10.0.3.50").forward
    assert table.for_client("10.0.1.50").forward
    assert table.for_client("127.0.0.1").forward


def test_short_id_alias_and_name_network() -> None:
    assert addrs(ask("abcdef012345", client="10.0.1.50")) == {"10.0.1.2"}
    assert addrs(ask("database.back")) == {"10.0.2.9"}


def test_case_is_echoed_and_matched_insensitively() -> None:
    reply = ask("WeB1.FrOnT", client="10.0.1.50")
    assert reply is not None and reply.answer[0].name.to_text() == "WeB1.FrOnT."


def test_known_name_without_that_type_is_noerror_empty() -> None:
    for rdtype in ("AAAA", "MX", "TXT"):
        reply = ask("web1", rdtype, client="10.0.1.50")
        assert reply is not None and reply.rcode() == dns.rcode.NOERROR and not reply.answer


def test_aaaa_where_there_is_one() -> None:
    assert addrs(ask("db", "AAAA")) == {"fd00::9"}


def test_ptr_names_the_container_on_its_network() -> None:
    reply = ask("2.1.0.10.in-addr.arpa", "PTR", client="10.0.1.50")
    assert reply is not None
    assert [rd.to_text() for rd in reply.answer[0]] == ["web1.front."]
    assert ask("9.2.0.10.in-addr.arpa", "PTR", client="10.0.1.50") is None
    ptr6 = ask("9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa", "PTR")
    assert ptr6 is not None and ptr6.answer[0][0].to_text() == "db.back."


def test_hosts_names_are_global_and_below_network_names() -> None:
    assert addrs(ask("lp", client="10.0.3.50")) == {"192.0.2.5"}
    reply = ask("5.2.0.192.in-addr.arpa", "PTR")
    assert reply is not None and reply.answer[0][0].to_text() == "printer."


def test_domain_suffix() -> None:
    assert addrs(ask("web1.docker", domain="docker", client="10.0.1.50")) == {"10.0.1.2"}
    assert addrs(ask("db.back.docker", domain="docker")) == {"10.0.2.9"}
    assert ask("web1.docker", client="10.0.1.50") is None


def test_srv_for_exposed_ports() -> None:
    snapshot = Snapshot.build(1, [SourcePart(networks=NETS, records=(
        Record(names=("api",), ipv4=("10.0.1.7",), network="front", ptr="api.front",
               srv=(("tcp", 8080),)),
    ))])
    reply = ask("_8080._tcp.api", "SRV", snapshot=snapshot)
    assert reply is not None
    assert [rd.to_text() for rd in reply.answer[0]] == ["0 0 8080 api.front."]
    assert {rd.to_text() for rrset in reply.additional for rd in rrset} == {"10.0.1.7"}
    empty = ask("_9999._tcp.api", "SRV", snapshot=snapshot)
    assert empty is not None and not empty.answer


def test_memo_rotates_orders_and_is_dropped_with_the_snapshot() -> None:
    registry = Registry()
    registry.update("test", SourcePart(networks=NETS, records=(
        container("a", "front", "10.0.1.10", "many"), container("b", "front", "10.0.1.11", "many"),
        container("c", "front", "10.0.1.12", "many"),
    )))
    handler = QueryHandler(registry, AnswerSettings())
    packet = dns.message.make_query("many", "A").to_wire()

    async def run() -> list[bytes | None]:
        return [await handler.answer(packet, "127.0.0.1", False) for _ in range(6)]

    replies = asyncio.run(run())
    firsts = {dns.message.from_wire(r).answer[0][0].to_text() for r in replies if r}
    assert firsts == {"10.0.1.10", "10.0.1.11", "10.0.1.12"}
    assert handler.answer_fast(packet, "127.0.0.1", False) is not None
    registry.update("test", SourcePart(networks=NETS))
    assert handler.answer_fast(packet, "127.0.0.1", False) is None
