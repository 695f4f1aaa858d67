"""Reverse names of private and special-use addresses (RFC 1918, RFC 6303, RFC 6598, RFC 4193).

A PTR question for such an address that the registry cannot answer has no public answer: sent
upstream it only leaks which private addresses this network uses, and waits on servers that can
only say NXDOMAIN. dockdns answers it NXDOMAIN itself (dnsmasq's --bogus-priv), unless the
operator routes that reverse zone with --forward-zone.
"""

from __future__ import annotations

import ipaddress

from discovery.registry.model import IPNetwork

PRIVATE_BLOCKS: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(block) for block in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7", "fe80::/10",
))


def reverse_network(labels: tuple[bytes, ...]) -> IPNetwork | None:
    """The addresses a reverse name covers (``10.in-addr.arpa`` -> 10.0.0.0/8), or None."""
    lower = [label.lower() for label in labels]
    try:
        if lower[-2:] == [b"in-addr", b"arpa"] and 1 <= len(lower) - 2 <= 4:
            octets = [label.decode("ascii") for label in reversed(lower[:-2])]
            if any(not o.isdigit() or int(o) > 255 or str(int(o)) != o for o in octets):
                return None
            padded = octets + ["0"] * (4 - len(octets))
            return ipaddress.ip_network(f"{'.'.join(padded)}/{8 * len(octets)}")
        if lower[-2:] == [b"ip6", b"arpa"] and 1 <= len(lower) - 2 <= 32:
            nibbles = [label.decode("ascii") for label in reversed(lower[:-2])]
            if any(len(n) != 1 or n not in "0123456789abcdef" for n in nibbles):
                return None
            value = int("".join(nibbles).ljust(32, "0"), 16)
            return ipaddress.ip_network((value, 4 * len(nibbles)))
    except (UnicodeDecodeError, ValueError):
        return None
    return None


def is_private_reverse(labels: tuple[bytes, ...]) -> bool:
    """Whether every address the reverse name covers is private or special-use."""
    network = reverse_network(labels)
    if network is None:
        return False
    return any(network.version == block.version and network.subnet_of(block)  # type: ignore[arg-type]
               for block in PRIVATE_BLOCKS)
