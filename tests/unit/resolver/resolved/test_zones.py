from __future__ import annotations

import ipaddress

from discovery.registry.model import Network, Snapshot, SourcePart
from resolver.dns.addresses import HostPort
from resolver.resolved.integration import registered_servers
from resolver.resolved.zones import owned_zones, reverse_zones, subnets_of


def zones(text: str) -> list[str]:
    return reverse_zones(ipaddress.ip_network(text))


def test_a_subnet_on_a_label_boundary_is_one_zone() -> None:
    assert zones("10.250.3.0/24") == ["3.250.10.in-addr.arpa"]
    assert zones("172.17.0.0/16") == ["17.172.in-addr.arpa"]
    assert zones("fd00:250:0:7::/64") == ["7.0.0.0.0.0.0.0.0.5.2.0.0.0.d.f.ip6.arpa"]


def test_a_subnet_between_boundaries_is_the_zones_of_its_blocks() -> None:
    assert zones("172.16.0.0/12") == [f"{octet}.172.in-addr.arpa" for octet in range(16, 32)]
    assert zones("fd00::/62") == [f"{n}.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa" for n in range(4)]


def test_all_of_in_addr_arpa_is_never_claimed() -> None:
    assert zones("0.0.0.0/0") == []
    assert zones("::/0") == []
    assert len(zones("10.0.0.0/9")) == 128


def test_owned_zones_are_the_domain_and_each_subnets_zones_once() -> None:
    snapshot = Snapshot.build(1, [SourcePart(networks=(
        Network("a", subnets=(ipaddress.ip_network("10.250.1.0/24"),)),
        Network("b", subnets=(ipaddress.ip_network("10.250.1.0/24"),
                              ipaddress.ip_network("fd00:250::/64"))),
    ))])
    assert owned_zones("docker", subnets_of(snapshot)) == (
        "docker", "1.250.10.in-addr.arpa", "0.0.0.0.0.0.0.0.0.5.2.0.0.0.d.f.ip6.arpa")
    assert owned_zones(None, []) == ()


def test_wildcard_listen_addresses_are_registered_as_loopback() -> None:
    assert registered_servers([HostPort("0.0.0.0", 53), HostPort("127.0.0.1", 53),
                               HostPort("::", 5353), HostPort("10.0.0.1", 53)]) == [
        HostPort("127.0.0.1", 53), HostPort("::1", 5353), HostPort("10.0.0.1", 53)]
