"""The zones dockdns owns: the --domain routing domain and the reverse zones of Docker's subnets.
Pure: computed from the config and a registry snapshot."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from discovery.registry.model import IPNetwork, Snapshot

log = logging.getLogger("dockdns.resolved")

# A subnet whose prefix is not on a label boundary (/20, /60) is covered by the zones of its
# sub-blocks on the next boundary (/24: 16 zones for a /20). Past this many for one subnet the
# subnet is left out (with a log line) rather than registering thousands of routing domains.
MAX_ZONES_PER_SUBNET = 256


def reverse_zones(subnet: IPNetwork) -> list[str]:
    """The reverse zones that together hold exactly the addresses of ``subnet``."""
    step = 8 if subnet.version == 4 else 4
    boundary = -(-subnet.prefixlen // step) * step  # the next label boundary, rounding up
    if boundary - subnet.prefixlen > MAX_ZONES_PER_SUBNET.bit_length() - 1:
        log.warning("systemd-resolved: %s is too large to route its reverse zones "
                    "(more than %d zones); skipped", subnet, MAX_ZONES_PER_SUBNET)
        return []
    if boundary == 0:
        return []  # all of in-addr.arpa or ip6.arpa is nobody's to claim
    zones: list[str] = []
    for block in subnet.subnets(new_prefix=boundary) if boundary > subnet.prefixlen else [subnet]:
        labels = block.network_address.reverse_pointer.split(".")
        # reverse_pointer names the whole address: keep the labels of the prefix and the suffix.
        zones.append(".".join(labels[-(2 + boundary // step):]))
    return zones


def subnets_of(snapshot: Snapshot) -> list[IPNetwork]:
    found: dict[IPNetwork, None] = {}
    for network in snapshot.networks.values():
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


def zone_labels(zone: str) -> tuple[bytes, ...]:
    return tuple(label.encode("ascii") for label in zone.split(".") if label)
