"""The registry model: networks, the records on them, and which client addresses are containers.

A ``Snapshot`` is immutable and built whole from the parts every source contributes; the daemon
swaps the current snapshot in one assignment, so a reader (the query path) never sees half an
update, and every memoized answer is tied to the snapshot it came from.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The scope Docker gives networks that span a Swarm; its resolver tries those first.
SCOPE_SWARM = "swarm"
SCOPE_LOCAL = "local"


@dataclass(frozen=True, slots=True)
class Network:
    """A network whose members can resolve each other's names."""

    name: str
    id: str = ""
    driver: str = "bridge"
    scope: str = SCOPE_LOCAL
    subnets: tuple[IPNetwork, ...] = ()
    internal: bool = False
    # Docker's default "bridge" network: Docker gives its members no names at all.
    default_bridge: bool = False
    source: str = ""
    # The network's gateway addresses: what `host.docker.internal` answers its members.
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Record:
    """One holder of addresses: a container's endpoint on a network, a service VIP, a hosts line.

    ``network`` is None for records every client may see (hosts files).
    """

    names: tuple[str, ...]  # lower case, no trailing dot
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    network: str | None = None
    ptr: str | None = None  # the name a PTR question for these addresses answers (case kept)
    srv: tuple[tuple[str, int], ...] = ()  # (protocol, port) pairs, e.g. ("tcp", 80)
    srv_target: str | None = None  # the name SRV answers point at
    origin: str = ""  # where this came from, for `dockdns check` and logs
    source: str = ""  # which kind of source made it: "hosts", "docker", "swarm", "static"
    # A name "*.SUFFIX" in ``names`` is a wildcard owner: it answers every name below SUFFIX
    # that no exact name holds (the most specific suffix wins).
    ttl: int | None = None  # this record's TTL (forward and PTR); None: the --ttl setting
    # Named SRV services ("_http._tcp", port) from the dockdns.srv label.
    srv_names: tuple[tuple[str, int], ...] = ()
    # Only queries from these addresses see the record (a container's --add-host and --link
    # names, which Docker writes into that one container's /etc/hosts); empty: as ``network``.
    clients: tuple[str, ...] = ()
    cname: str | None = None  # a static CNAME: the names are aliases of this target
    # Static records of other types: (type code, rdata in wire form).
    data: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Client:
    """An address that belongs to a container: queries from it see only its networks."""

    address: str
    networks: tuple[str, ...]
    container: str = ""


@dataclass(frozen=True, slots=True)
class SourcePart:
    """Everything one source knows at one moment."""

    networks: tuple[Network, ...] = ()
    records: tuple[Record, ...] = ()
    clients: tuple[Client, ...] = ()


# A PTR answer: (the network it is visible on, None for every network; the target; its TTL).
PtrEntry = tuple[str | None, str, int | None]


@dataclass(frozen=True, slots=True)
class NameSet:
    """The records one name has on one network (or globally), ready for answering."""

    records: tuple[Record, ...]
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a registry is built: a build makes hundreds of
    thousands of acyclic objects for 100,000 names, and the collector would scan them again and
    again (it more than doubled the build time). Reference counting still frees as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    return values if len(values) < 2 else tuple(dict.fromkeys(values))


def _name_sets(records: Iterable[Record]) -> dict[str, NameSet]:
    # Written for 100,000-name registries: most names have one record, and the names of one
    # record share one NameSet (they are equal anyway), which saves time and memory.
    grouped: dict[str, list[Record]] = {}
    for record in records:
        names = record.names
        for name in names if len(names) == 1 else dict.fromkeys(names):
            group = grouped.get(name)
            if group is None:
                grouped[name] = [record]
            else:
                group.append(record)
    sets: dict[str, NameSet] = {}
    alone: dict[int, NameSet] = {}  # by id() of the record, alive throughout
    for name, group in grouped.items():
        if len(group) == 1:
            record = group[0]
            name_set = alone.get(id(record))
            if name_set is None:
                name_set = NameSet((record,), _unique(record.ipv4), _unique(record.ipv6))
                alone[id(record)] = name_set
        else:
            name_set = NameSet(
                records=tuple(group),
                ipv4=tuple(dict.fromkeys(a for r in group for a in r.ipv4)),
                ipv6=tuple(dict.fromkeys(a for r in group for a in r.ipv6)),
            )
        sets[name] = name_set
    return sets


def _split_wild(sets: dict[str, NameSet]) -> tuple[dict[str, NameSet], dict[str, NameSet]]:
    """Exact names, and wildcard owners keyed by their suffix. Wildcards are rare: the common
    case costs one scan of the names and no copy."""
    wild_names = [name for name in sets if name.startswith("*.")]
    if not wild_names:
        return sets, {}
    wild = {name[2:]: sets.pop(name) for name in wild_names}
    return sets, wild


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole registry at one moment, with the indexes the answer logic reads."""

    generation: int
    networks: Mapping[str, Network]
    records: tuple[Record, ...]
    clients: Mapping[str, Client]
    by_network: Mapping[str, Mapping[str, NameSet]] = field(default_factory=dict)
    global_names: Mapping[str, NameSet] = field(default_factory=dict)
    ptr: Mapping[str, tuple[PtrEntry, ...]] = field(default_factory=dict)
    # Wildcard owners by the suffix below which they answer ("*.web" under "web").
    wild_by_network: Mapping[str, Mapping[str, NameSet]] = field(default_factory=dict)
    global_wild: Mapping[str, NameSet] = field(default_factory=dict)
    # Names only one client address sees: address -> name -> holders.
    private: Mapping[str, Mapping[str, NameSet]] = field(default_factory=dict)

    @classmethod
    def build(cls, generation: int, parts: Iterable[SourcePart]) -> Snapshot:
        with gc_paused():
            return cls._build(generation, parts)

    @classmethod
    def _build(cls, generation: int, parts: Iterable[SourcePart]) -> Snapshot:
        networks: dict[str, Network] = {}
        records: list[Record] = []
        clients: dict[str, Client] = {}
        for part in parts:
            for network in part.networks:
                networks.setdefault(network.name, network)
            records.extend(part.records)
            for client in part.clients:
                known = clients.get(client.address)
                if known is None:
                    clients[client.address] = client
                else:  # the same address seen by two sources: it sees both sets of networks
                    merged = tuple(dict.fromkeys(known.networks + client.networks))
                    clients[client.address] = Client(client.address, merged, known.container)
        per_network: dict[str | None, list[Record]] = {}
        ptr: dict[str, list[PtrEntry]] = {}
        per_client: dict[str, list[Record]] = {}
        for record in records:
            if record.clients:
                for address in record.clients:
                    per_client.setdefault(address, []).append(record)
                continue
            per_network.setdefault(record.network, []).append(record)
            if record.ptr:
                for address in record.ipv4 + record.ipv6:
                    entries = ptr.setdefault(address, [])
                    entry = (record.network, record.ptr, record.ttl)
                    if all(e[:2] != entry[:2] for e in entries):
                        entries.append(entry)
        global_records = per_network.pop(None, [])
        by_network: dict[str, dict[str, NameSet]] = {}
        wild_by_network: dict[str, dict[str, NameSet]] = {}
        for network_name, group in per_network.items():
            if network_name is not None:
                by_network[network_name], wild = _split_wild(_name_sets(group))
                if wild:
                    wild_by_network[network_name] = wild
        global_names, global_wild = _split_wild(_name_sets(global_records))
        return cls(
            generation=generation,
            networks=networks,
            records=tuple(records),
            clients=clients,
            by_network=by_network,
            global_names=global_names,
            ptr={address: tuple(entries) for address, entries in ptr.items()},
            wild_by_network=wild_by_network,
            global_wild=global_wild,
            private={address: _name_sets(group) for address, group in per_client.items()},
        )

    @classmethod
    def empty(cls) -> Snapshot:
        return cls.build(0, ())

    def name_count(self) -> int:
        return (len(self.global_names) + len(self.global_wild)
                + sum(len(names) for names in self.by_network.values())
                + sum(len(names) for names in self.wild_by_network.values())
                + sum(len(names) for names in self.private.values()))
