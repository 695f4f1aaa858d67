"""The forwarder's slice of the configuration, and the conditional-forwarding zone it names."""

from __future__ import annotations

from dataclasses import dataclass

from resolver.dns.addresses import HostPort, parse_hostport


@dataclass(frozen=True, slots=True, order=True)
class ForwardZone:
    """Names under ``zone`` (lower case, no trailing dot; "" is the root) go to ``server``."""

    zone: str
    server: HostPort

    def __str__(self) -> str:
        return f"{self.zone or '.'}={self.server}"


def parse_forward_zone(text: str) -> ForwardZone:
    """``corp.example=10.0.0.1``, ``corp.example=[fd00::1]:5353`` -> ForwardZone."""
    zone, sep, server = text.partition("=")
    if not sep:
        raise ValueError(f"{text!r}: expected ZONE=ADDR[:PORT]")
    name = zone.strip().strip(".").lower()
    if name and any(not label or len(label) > 63 for label in name.split(".")):
        raise ValueError(f"{text!r}: {zone!r} is not a domain name")
    return ForwardZone(name, parse_hostport(server, 53))


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    """What the forward chain (stages, upstream table, pool, cache) is built from and
    reconfigured with; defaults as ``Config``'s (resolver/config/settings.py says why)."""

    upstreams: tuple[HostPort, ...] = ()
    forward_zones: tuple[ForwardZone, ...] = ()
    resolv_conf: str = "/etc/resolv.conf"
    # The daemon's own listen addresses: an upstream that points back at one is a loop.
    listen: tuple[HostPort, ...] = ()
    upstream_timeout: float = 1.0
    upstream_ca: str = ""  # PEM file for tls:// upstreams; "": the system's CA store
    max_inflight: int = 4096
    cache_size: int = 10_000
    cache_min_ttl: int = 0
    cache_max_ttl: int = 86_400
    serve_stale: bool = True
    bogus_priv: bool = True
    # Special-use names, local zones and CHAOS (resolver/forward/special_names.py).
    special_names: bool = True
    identity: str | None = None  # None: the host name, as Unbound
    hide_identity: bool = False
    hide_version: bool = False
