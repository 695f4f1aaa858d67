"""Which upstream servers a name goes to: --upstream, or the host's resolv.conf (re-read when it
changes), conditional zones (--forward-zone, the longest matching zone wins), and never dockdns
itself (an upstream that is one of our own listen addresses would make a forwarding loop).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from resolver.dns.addresses import HostPort, is_local_address
from resolver.forward.settings import ForwardSettings, ForwardZone

log = logging.getLogger("dockdns.upstreams")

# When /etc/resolv.conf names only systemd-resolved's local stub, the real servers are here
# (the stub would answer, but through another cache and its own failover).
SYSTEMD_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"
SYSTEMD_STUBS = frozenset({"127.0.0.53", "127.0.0.54"})
DNS_PORT = 53


def parse_resolv_conf(text: str) -> list[HostPort]:
    """The ``nameserver`` lines of resolv.conf text, in order (always port 53, as glibc)."""
    servers: list[HostPort] = []
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        try:
            address = ipaddress.ip_address(fields[1])
        except ValueError:
            log.warning("resolv.conf: skipped nameserver %r (not an IP address)", fields[1])
            continue
        server = HostPort(str(address), DNS_PORT)
        if server not in servers:
            servers.append(server)
    return servers


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        log.warning("cannot read %s: %s", path, err.strerror or err)
        return ""


def read_nameservers(path: Path, systemd_path: Path = Path(SYSTEMD_RESOLV_CONF),
                     keep_stub: bool = False) -> list[HostPort]:
    """The host's nameservers, looking through systemd-resolved's stub to the servers behind it,
    unless ``keep_stub`` (dockdns registered with resolved: the stub keeps per-link servers and
    split DNS, and resolver/resolved/guard.py keeps the stub and dockdns from looping)."""
    servers = parse_resolv_conf(_read(path))
    if not keep_stub and servers and all(server.host in SYSTEMD_STUBS for server in servers):
        behind = parse_resolv_conf(_read(systemd_path)) if systemd_path.exists() else []
        if behind:
            return behind
    return servers


def points_at(upstream: HostPort, listen: Iterable[HostPort],
              is_local: Callable[[str], bool] = is_local_address) -> bool:
    """Whether queries sent to ``upstream`` would arrive at one of the ``listen`` addresses."""
    for address in listen:
        if address.port != upstream.port:
            continue
        if address.host == upstream.host:
            return True
        listening = ipaddress.ip_address(address.host)
        target = ipaddress.ip_address(upstream.host)
        # A wildcard destination means "this host"; a wildcard listener receives on every local
        # address of its family (IPv6's "::" on IPv4 ones too, Linux's default dual stack).
        if target.is_unspecified:
            return True
        if listening.is_unspecified and (listening.version == 6 or target.version == 4) \
                and is_local(upstream.host):
            return True
    return False


def without_self(servers: Iterable[HostPort], listen: Sequence[HostPort],
                 is_local: Callable[[str], bool] = is_local_address) -> list[HostPort]:
    """``servers`` minus the ones that are dockdns itself, each dropped with a warning."""
    kept: list[HostPort] = []
    for server in servers:
        if points_at(server, listen, is_local):
            log.warning("upstream %s is one of dockdns's own listen addresses; dropped (it "
                        "would forward queries to itself)", server)
        else:
            kept.append(server)
    return kept


def zone_labels(zone: str) -> tuple[bytes, ...]:
    return tuple(label.encode("latin-1") for label in zone.split(".") if label)


@dataclass(frozen=True, slots=True)
class UpstreamTable:
    """The upstreams of every name: the zone servers of the longest matching zone, else the
    default upstreams."""

    default: tuple[HostPort, ...]
    zones: dict[tuple[bytes, ...], tuple[HostPort, ...]]

    def for_labels(self, labels: tuple[bytes, ...]) -> tuple[HostPort, ...]:
        if self.zones:
            lowered = tuple(label.lower() for label in labels)
            for start in range(len(lowered) + 1):
                servers = self.zones.get(lowered[start:])
                if servers is not None:
                    return servers
        return self.default

    def routed(self, labels: tuple[bytes, ...]) -> bool:
        """Whether a --forward-zone covers this name."""
        lowered = tuple(label.lower() for label in labels)
        return any(lowered[start:] in self.zones for start in range(len(lowered) + 1))

    def servers(self) -> set[HostPort]:
        found = set(self.default)
        for servers in self.zones.values():
            found.update(servers)
        return found


def build_table(default: Sequence[HostPort], zones: Sequence[ForwardZone],
                listen: Sequence[HostPort],
                is_local: Callable[[str], bool] = is_local_address) -> UpstreamTable:
    grouped: dict[tuple[bytes, ...], list[HostPort]] = {}
    for zone in zones:
        grouped.setdefault(zone_labels(zone.zone), []).append(zone.server)
    return UpstreamTable(
        default=tuple(without_self(default, listen, is_local)),
        zones={labels: tuple(without_self(dict.fromkeys(servers), listen, is_local))
               for labels, servers in grouped.items()},
    )


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class UpstreamSource:
    """Keeps the ``UpstreamTable`` current: fixed when --upstream is given, else from resolv.conf,
    re-read when that file (or systemd-resolved's) changes."""

    def __init__(self, config: ForwardSettings, systemd_path: str = SYSTEMD_RESOLV_CONF) -> None:
        self._static = config.upstreams
        self._zones = config.forward_zones
        self._listen = config.listen
        self._paths = (Path(config.resolv_conf), Path(systemd_path))
        self._stamps: tuple[tuple[int, int, int] | None, ...] = ()
        self.table = UpstreamTable((), {})
        self._origin = ""
        self.keep_stub = False

    def keep_stub_servers(self, keep: bool) -> None:
        """Forward to resolved's stub itself when resolv.conf names it (resolver/resolved/)."""
        self.keep_stub = keep
        if not self._static:
            self.load(quiet=True)

    def reconfigure(self, config: ForwardSettings) -> None:
        """New upstreams, zones or resolv.conf path (SIGHUP): rebuild the table at once."""
        self._static = config.upstreams
        self._zones = config.forward_zones
        self._listen = config.listen
        self._paths = (Path(config.resolv_conf), self._paths[1])
        self.load()

    @property
    def from_resolv_conf(self) -> bool:
        return not self._static

    def load(self, quiet: bool = False) -> UpstreamTable:
        if self._static:
            default = list(self._static)
            origin = "--upstream"
        else:
            self._stamps = tuple(_stamp(path) for path in self._paths)
            default = read_nameservers(*self._paths, keep_stub=self.keep_stub)
            origin = str(self._paths[0])
        self.table = build_table(default, self._zones, self._listen)
        self._origin = origin
        if not quiet:
            self.describe()
        return self.table

    def describe(self) -> None:
        """Log the upstreams and zones in use."""
        origin = self._origin
        if self.table.default:
            log.info("upstreams (from %s): %s", origin,
                     ", ".join(str(s) for s in self.table.default))
        else:
            log.warning("no upstream servers (from %s): names outside the registry get SERVFAIL",
                        origin)
        for labels, servers in self.table.zones.items():
            log.info("zone %s forwarded to %s", b".".join(labels).decode("latin-1") or ".",
                     ", ".join(str(s) for s in servers) or "nothing (all dropped)")

    def poll(self) -> bool:
        """Re-read resolv.conf if it changed; whether it did."""
        if self._static:
            return False
        stamps = tuple(_stamp(path) for path in self._paths)
        if stamps == self._stamps:
            return False
        log.info("%s changed, re-reading the upstreams", self._paths[0])
        self.load()
        return True
