"""Which part of the registry each client sees, and the memo of ready answers for that view.

A query from a container's address sees only the networks that container is attached to (Docker's
per-container resolver); any other client (the host, loopback) sees every user-defined network.
Clients that see the same networks share one ``View``, and so share its memo of ready-made wire
answers: the hot path is one dictionary lookup for the view and one for the answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from discovery.model import SCOPE_SWARM, IPNetwork, Network, Snapshot

# A memo entry: (monotonic time it stays valid until, the next wire reply minus its ID, and the
# slot in QueryStats it is counted under).
MemoEntry = tuple[float, Iterator[bytes], int]

# The memo holds one entry per distinct query (bytes after the ID) per view. Well-behaved clients
# ask a few thousand distinct questions; the cap only bounds a flood of unique names, after which
# the memo simply starts again (a rebuild costs one slow-path answer per name).
MEMO_LIMIT = 100_000
# Distinct client addresses remembered per snapshot; beyond it the table starts again.
CLIENT_LIMIT = 65_536


@dataclass(eq=False, slots=True)
class View:
    networks: tuple[str, ...]  # in the order names are looked up
    forward: bool  # whether names outside the registry may be forwarded
    refused: bool = False
    container: str = ""  # the container this view belongs to, for logs and `dockdns check`
    memo_udp: dict[bytes, MemoEntry] = field(default_factory=dict)
    memo_tcp: dict[bytes, MemoEntry] = field(default_factory=dict)

    def remember(self, key: bytes, entry: MemoEntry, tcp: bool) -> None:
        memo = self.memo_tcp if tcp else self.memo_udp
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        memo[key] = entry


def lookup_order(networks: list[Network]) -> tuple[str, ...]:
    """Docker's order: Swarm-scoped networks first, then the rest, each by name."""
    ordered = sorted(networks, key=lambda n: (n.scope != SCOPE_SWARM, n.name))
    return tuple(n.name for n in ordered)


class ViewTable:
    """Views for one snapshot; a new table is made whenever the snapshot changes."""

    def __init__(self, snapshot: Snapshot, default_bridge_names: bool = False,
                 allow: Sequence[IPNetwork] = ()) -> None:
        self.snapshot = snapshot
        self._default_bridge_names = default_bridge_names
        self.by_client: dict[str, View] = {}
        self._interned: dict[tuple[tuple[str, ...], bool, bool], View] = {}
        visible = [n for n in snapshot.networks.values() if self._names_visible(n)]
        self.host_view = self._intern(lookup_order(visible), forward=True)
        self.refused_view = self._intern((), forward=False, refused=True)
        # Who may ask at all: the subnets of every known network (containers, also on the
        # default bridge, use dockdns for forwarding) and what the operator added.
        self._allowed = tuple(allow) + tuple(
            subnet for network in snapshot.networks.values() for subnet in network.subnets)

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
        if ip.is_loopback:
            return True
        return any(ip in network for network in self._allowed)

    def _names_visible(self, network: Network) -> bool:
        return self._default_bridge_names or not network.default_bridge

    def _intern(self, networks: tuple[str, ...], forward: bool, refused: bool = False,
                container: str = "") -> View:
        key = (networks, forward, refused)
        view = self._interned.get(key)
        if view is None:
            view = View(networks, forward, refused, container)
            self._interned[key] = view
        return view

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
        client = self.snapshot.clients.get(address)
        if client is None:
            return self.host_view
        attached = [self.snapshot.networks[n] for n in client.networks
                    if n in self.snapshot.networks]
        visible = [n for n in attached if self._names_visible(n)]
        # Docker's CVE-2024-29018 rule: a container only on internal networks must not reach
        # the outside world through its resolver.
        forward = not attached or not all(n.internal for n in attached)
        return self._intern(lookup_order(visible), forward, container=client.container)
