"""Which part of the registry each client sees, and the memo of ready answers for that view.

A query from a container's address sees only the networks that container is attached to (Docker's
per-container resolver); any other client (the host, loopback) sees every user-defined network.
Clients that see the same networks share one ``View``, and so share its memo of ready-made wire
answers: the hot path is one dictionary lookup for the view and one for the answer.

When the registry changes, the table forgets only what the change touched (``ViewTable.changed``):
the memo entries of the names it touched, in every view, and the cached view of each client
address whose entry changed. A change of the networks themselves makes a new table.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from discovery.registry.model import SCOPE_SWARM, Client, IPNetwork, Network, Snapshot, Touched
from resolver.answer.memo import Memo, MemoEntry
from resolver.dns.addresses import is_local_address, is_loopback
from resolver.ops.logs import RateLimitedLog

log = logging.getLogger("dockdns.views")
limited = RateLimitedLog(log)

# Distinct client addresses whose view is remembered per snapshot (one dict entry, ~150 bytes,
# each): 65,536 covers a /16 of containers, and past it the table starts again, so a flood from
# spoofed sources costs lookups (one ACL check per new address), never memory.
CLIENT_LIMIT = 65_536
# How views are shared: by networks seen, forwarding, refusal, private names' owner and what
# host.docker.internal answers.
ViewKey = tuple[tuple[str, ...], bool, bool, str | None, tuple[str, ...]]


@dataclass(eq=False, slots=True)
class View:
    networks: tuple[str, ...]  # in the order names are looked up
    forward: bool  # whether names outside the registry may be forwarded
    refused: bool = False
    container: str = ""  # the container this view belongs to, for logs and `dockdns check`
    # The client address whose own names (--add-host, --link) this view answers, if it has any:
    # such a view belongs to that one address, so its memo is its own.
    private: str | None = None
    host: tuple[str, ...] = ()  # what host.docker.internal answers (its network's gateway)
    memo_udp: Memo = field(default_factory=Memo)
    memo_tcp: Memo = field(default_factory=Memo)

    def remember(self, key: bytes, entry: MemoEntry, tcp: bool, size: int,
                 names: tuple[str, ...] = ()) -> None:
        """Keep ``entry`` for the query bytes ``key``; ``size`` is the bytes of its replies,
        ``names`` the registry names it depends on (see ``touched_names``)."""
        (self.memo_tcp if tcp else self.memo_udp).remember(key, entry, size, names)

    def renewed(self, key: bytes, entry: MemoEntry, tcp: bool, now: float) -> MemoEntry | None:
        return (self.memo_tcp if tcp else self.memo_udp).renewed(key, entry, now)


def lookup_order(networks: list[Network]) -> tuple[str, ...]:
    """Docker's order: Swarm-scoped networks first, then the rest; within each, internal
    networks after the others (libnetwork sorts a sandbox's endpoints that way, since an internal
    network cannot be the gateway), then by name."""
    ordered = sorted(networks, key=lambda n: (n.scope != SCOPE_SWARM, n.internal, n.name))
    return tuple(n.name for n in ordered)


def touched_names(touched: Touched) -> set[str]:
    """The names whose memo entries a change invalidates: each touched name, also as
    ``NAME.NETWORK`` (Docker's name-on-network form), and PTR addresses. Entries are memoized
    under their query's name (also with --domain taken off, and an SRV question's target) and
    every CNAME target the answer went through (``handler.memo_names``)."""
    names: set[str] = set()
    for network, name in touched.names:
        names.add(name)
        if network is not None:
            names.add(f"{name}.{network.lower()}")
    names.update(name for _, name in touched.private)
    names.update(touched.ptr)
    return names


class ViewTable:
    """Views for one snapshot's networks; ``changed`` keeps it current through changes that
    leave the networks as they are, and a new table is made for the others."""

    def __init__(self, snapshot: Snapshot, default_bridge_names: bool = False,
                 allow: Sequence[IPNetwork] = (), as_container: str | None = None,
                 host_names: bool = False) -> None:
        self.snapshot = snapshot
        self._default_bridge_names = default_bridge_names
        self._host_names = host_names
        self.by_client: dict[str, View] = {}
        self._interned: dict[ViewKey, View] = {}
        self._private_views = False  # whether any view belongs to one address
        visible = [n for n in snapshot.networks.values() if self._names_visible(n)]
        self._host_order = lookup_order(visible)
        self.host_view = self._intern(self._host_order, forward=True)
        self.refused_view = self._intern((), forward=False, refused=True)
        # Who may ask at all: the subnets of every known network (containers, also on the
        # default bridge, use dockdns for forwarding) and what the operator added.
        self._allowed = tuple(allow) + tuple(
            subnet for network in snapshot.networks.values() for subnet in network.subnets)

        # Sidecar mode: loopback clients get the view of this container (resolved once per
        # snapshot, since a new snapshot makes a new table).
        self.as_container = as_container
        self.sidecar_view: View | None = None
        self.sidecar_found = False
        if as_container is not None:
            self.sidecar_view = self._sidecar_view(as_container)

    def changed(self, touched: Touched) -> bool:
        """Forget what ``touched`` invalidates; False when the table must be made again (the
        networks changed, or too much to list)."""
        if touched.networks or touched.everything:
            return False
        if self.as_container is not None and touched.clients:
            return False  # the sidecar's container may have come or gone: resolve it again
        views = [view for view in self._interned.values() if not view.refused]
        if touched.wild:
            # What a wildcard owner covers cannot be listed: its views start again (rare).
            for view in views:
                view.memo_udp.clear()
                view.memo_tcp.clear()
        else:
            names = touched_names(touched)
            if names:
                for view in views:
                    view.memo_udp.forget(names)
                    view.memo_tcp.forget(names)
        for address in touched.clients:
            self.by_client.pop(address, None)
            if address not in self.snapshot.private:
                self._drop_private(address)
        return True

    def memo_usage(self) -> tuple[int, int]:
        """The entries and the bytes (as counted against their bound) of every view's memos,
        both transports: read by the metrics at each scrape."""
        views = {id(view): view for view in (*self._interned.values(), *self.by_client.values())}
        entries = used = 0
        for view in views.values():
            for memo in (view.memo_udp, view.memo_tcp):
                entries += len(memo)
                used += memo.used
        return entries, used

    def _drop_private(self, address: str) -> None:
        """The views of an address that has no names of its own any more."""
        if self._private_views:
            for key in [key for key in self._interned if key[3] == address]:
                del self._interned[key]

    def allowed(self, address: str) -> bool:
        """Loopback, container addresses, known network subnets and --allow: never an open
        resolver on a public interface by accident."""
        if address in self.snapshot.clients:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_loopback or any(ip in network for network in self._allowed):
            return True
        # The host itself, whatever address the kernel picked as the source (a query from the
        # host to a bridge gateway may leave from the primary interface's address).
        return is_local_address(str(ip))

    def _names_visible(self, network: Network) -> bool:
        return self._default_bridge_names or not network.default_bridge

    def _intern(self, networks: tuple[str, ...], forward: bool, refused: bool = False,
                container: str = "", private: str | None = None,
                host: tuple[str, ...] = ()) -> View:
        key = (networks, forward, refused, private, host)
        view = self._interned.get(key)
        if view is None:
            view = View(networks, forward, refused, container, private, host)
            self._interned[key] = view
            self._private_views |= private is not None
        return view

    def host_addresses(self, address: str) -> tuple[str, ...]:
        """What ``host.docker.internal`` answers ``address``: the gateway of the network whose
        subnet holds it (the host as that client reaches it); loopback for loopback."""
        if not self._host_names:
            return ()
        if is_loopback(address):
            return ("127.0.0.1", "::1")
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return ()
        for network in self.snapshot.networks.values():
            if network.gateways and any(ip.version == subnet.version and ip in subnet
                                        for subnet in network.subnets):
                return network.gateways
        return ()

    def _private(self, address: str) -> str | None:
        return address if address in self.snapshot.private else None

    def for_client(self, address: str) -> View:
        view = self.by_client.get(address)
        if view is None:
            view = self._resolve(address)
            if len(self.by_client) >= CLIENT_LIMIT:
                self.by_client.clear()
            self.by_client[address] = view
        return view

    def _resolve(self, address: str) -> View:
        if not self.allowed(address):
            return self.refused_view
        if self.sidecar_view is not None and is_loopback(address):
            return self.sidecar_view
        client = self.snapshot.clients.get(address)
        if client is None:
            host = self.host_addresses(address)
            private = self._private(address)
            if not host and private is None:
                return self.host_view
            return self._intern(self._host_order, True, private=private, host=host)
        return self._client_view(client)

    def _sidecar_view(self, reference: str) -> View:
        clients = find_container_clients(self.snapshot, reference)
        if not clients:
            # Not (yet) known: see no network at all rather than every network, so that a sidecar
            # never shows its app names the app could not resolve through Docker itself.
            return self._intern((), forward=True, container=reference)
        self.sidecar_found = True
        networks = tuple(dict.fromkeys(n for c in clients for n in c.networks))
        return self._client_view(Client(clients[0].address, networks, clients[0].container))

    def _client_view(self, client: Client) -> View:
        attached = [self.snapshot.networks[n] for n in client.networks
                    if n in self.snapshot.networks]
        visible = [n for n in attached if self._names_visible(n)]
        # Docker's CVE-2024-29018 rule: a container only on internal networks must not reach
        # the outside world through its resolver.
        forward = not attached or not all(n.internal for n in attached)
        return self._intern(lookup_order(visible), forward, container=client.container,
                            private=self._private(client.address),
                            host=self.host_addresses(client.address))


def _same_container(reference: str, container: str) -> bool:
    """A name matches exactly; an ID (12+ hex digits) matches as a prefix, as Docker's CLI does."""
    container = container.lstrip("/").lower()
    if not container:
        return False
    if reference == container:
        return True
    is_id = len(reference) >= 12 and all(c in "0123456789abcdef" for c in reference)
    return is_id and (container.startswith(reference) or reference.startswith(container))


def find_container_clients(snapshot: Snapshot, reference: str) -> list[Client]:
    """The registry's Client entries (one per address) of the container named or ID'd so.

    A Client names its container (``Client.container``: the Docker source puts the name or ID
    there); failing that, a container's own records carry its name and short ID as names (as
    Docker's do), and their addresses lead to its Client entries.
    """
    reference = reference.lstrip("/").lower()
    found = [c for c in snapshot.clients.values() if _same_container(reference, c.container)]
    if found:
        return found
    short = reference[:12]
    addresses = {
        address
        for record in snapshot.records
        if record.network is not None and (reference in record.names or short in record.names)
        for address in record.ipv4 + record.ipv6
    }
    return [snapshot.clients[a] for a in sorted(addresses) if a in snapshot.clients]
