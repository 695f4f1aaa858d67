"""The zones dockdns owns: the --domain routing domain and the reverse zones of Docker's subnets.
Pure: computed from the config and a registry snapshot."""

from __future__ import annotations

from collections.abc import Iterable

from discovery.registry.model import IPNetwork, Snapshot


def reverse_zones(subnet: IPNetwork) -> list[str]:
    """The reverse zones that together hold exactly the addresses of ``subnet``: a prefix off a
    label boundary (/20, /62) is covered by its blocks on the next boundary (sixteen /24 zones
    for a /20), so at most 128 zones (IPv4) or 8 (IPv6) for one subnet."""
    step = 8 if subnet.version == 4 else 4
    boundary = -(-subnet.prefixlen // step) * step  # the next label boundary, rounding up
    if boundary == 0:
        return []  # all of in-addr.arpa or ip6.arpa is nobody's to claim
    zones: list[str] = []
    for block in subnet.subnets(new_prefix=boundary) if boundary > subnet.prefixlen else [subnet]:
        labels = block.network_address.reverse_pointer.split(".")
        # reverse_pointer names the whole address: keep the labels of the prefix and the suffix.
        zones.append(".".join(labels[-(2 + boundary // step):]))
    return zones


def subnets_of(snapshot: Snapshot, default_bridge: bool = False) -> list[IPNetwork]:
    """The subnets of the snapshot's networks; Docker's default bridge only with
    ``default_bridge`` (--default-bridge-names: otherwise its members have no names here)."""
    found: dict[IPNetwork, None] = {}
    for network in snapshot.networks.values():
        if network.default_bridge and not default_bridge:
            continue
        for subnet in network.subnets:
            found[subnet] = None
    return sorted(found, key=lambda n: (n.version, n))


def owned_zones(domain: str | None, subnets: Iterable[IPNetwork]) -> tuple[str, ...]:
    """Every zone dockdns answers for alone, lower case, no trailing dot; the domain first."""
    zones: dict[str, None] = {}
    if domain:
        zones[domain] = None
    for subnet in subnets:
        for zone in reverse_zones(subnet):
            zones[zone] = None
    return tuple(zones)
