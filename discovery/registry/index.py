"""The registry's indexes, kept current by deltas: a ``Snapshot`` is changed in place, one record
at a time, never rebuilt.

Each source part is a multiset (records, networks, clients with their counts); every index (names
per network, names every network sees, wildcard owners, names private to one client, PTR per
address, clients, networks) is updated for the records a delta adds or removes, copying only the
holder of each name it touches (CoreDNS's kubernetes plugin keeps per-object indexes the same
way). The answer path runs on the same event loop, between callbacks: a delta applied within one
callback is atomic to it, so no reader ever sees half an update.

The order a whole build from the parts gives (parts by source name, each as it lists its records)
is kept too: a name's holders carry their part (``Group.owners``), and a record added later lands
after the holders of parts sorted before its own. ``Touched`` tells listeners what a delta
changed, so that memos and views can forget only that.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

from discovery.registry.values import (
    Client,
    Group,
    NameSet,
    Network,
    PtrEntry,
    Record,
    SourcePart,
    alone_holds,
    gc_paused,
    group_of,
    unique,
)

T = TypeVar("T")
Table = dict[str, NameSet]
# Names a delta gives more holders: (id of the table, name) -> (table, name, holders, parts,
# the kinds of source of the holders it adds, None where ``Snapshot.source_names`` does not
# count the table's names).
Pending = dict[tuple[int, str], tuple[Table, str, list[Record], list[str], set[str] | None]]
# Beyond this many touched names a delta is reported as touching everything: its listeners
# start over (a first load of a million hosts lines must not also build a million-entry set).
TOUCHED_LIMIT = 10_000


class Touched:
    """What one delta changed. ``names``: (network or None, name) pairs whose holders changed
    (wildcard owners as ``*.SUFFIX``); ``private``: (client address, name); ``ptr``: addresses
    whose PTR holders changed; ``clients``: addresses whose client entry or private names
    changed; ``networks``: the networks themselves changed; ``everything``: too much to list."""

    __slots__ = ("names", "private", "ptr", "clients", "networks", "wild", "everything")

    def __init__(self) -> None:
        self.names: set[tuple[str | None, str]] = set()
        self.private: set[tuple[str, str]] = set()
        self.ptr: set[str] = set()
        self.clients: set[str] = set()
        self.networks = False
        self.wild = False  # a wildcard owner changed: what it covers cannot be listed
        self.everything = False

    def name(self, network: str | None, name: str) -> None:
        if not self.everything:
            self.names.add((network, name))
            if len(self.names) > TOUCHED_LIMIT:
                self._overflow()

    def private_name(self, address: str, name: str) -> None:
        if not self.everything:
            self.private.add((address, name))
            self.clients.add(address)
            if len(self.private) > TOUCHED_LIMIT:
                self._overflow()

    def address(self, address: str) -> None:
        if not self.everything:
            self.ptr.add(address)
            if len(self.ptr) > TOUCHED_LIMIT:
                self._overflow()

    def _overflow(self) -> None:
        self.everything = True
        self.names.clear()
        self.private.clear()
        self.ptr.clear()
        self.clients.clear()

    def __bool__(self) -> bool:
        return bool(self.everything or self.names or self.private or self.ptr or self.clients
                    or self.networks or self.wild)


class Counts(Generic[T]):
    """One part's items as a multiset, in the order they first came."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: dict[T, int] = {}

    def add(self, item: T) -> None:
        items = self.items
        items[item] = items.get(item, 0) + 1

    def discard(self, item: T) -> bool:
        """Take one occurrence away; False when there was none (the delta is ignored there)."""
        items = self.items
        count = items.get(item)
        if count is None:
            return False
        if count == 1:
            del items[item]
        else:
            items[item] = count - 1
        return True

    def __contains__(self, item: object) -> bool:
        return item in self.items

    def listed(self) -> tuple[T, ...]:
        return tuple(item for item, count in self.items.items() for _ in range(count))


class Store:
    """What one source contributes, as multisets."""

    __slots__ = ("networks", "records", "clients")

    def __init__(self) -> None:
        self.networks: Counts[Network] = Counts()
        self.records: Counts[Record] = Counts()
        self.clients: Counts[Client] = Counts()

    def part(self) -> SourcePart:
        return SourcePart(self.networks.listed(), self.records.listed(), self.clients.listed())


def multiset_delta(items: tuple[T, ...], counts: Counts[T]) -> tuple[list[T], list[T]]:
    """(what ``counts`` holds beyond ``items``, what ``items`` holds beyond ``counts``)."""
    wanted: dict[T, int] = {}
    for item in items:
        wanted[item] = wanted.get(item, 0) + 1
    removed = [item for item, count in counts.items.items()
               for _ in range(count - wanted.get(item, 0))]
    added: list[T] = []
    for item in items:
        have = counts.items.get(item, 0)
        if wanted[item] > have:
            wanted[item] -= 1
            added.append(item)
    return removed, added


class PtrHolders:
    """The records with a PTR target for one address, when there are several, in build order.
    Changed in place: a blocklist hosts file holds a million lines of 0.0.0.0, and copying
    their holders per line would make loading it quadratic."""

    __slots__ = ("records", "owners")

    def __init__(self, records: list[Record], owners: list[str]) -> None:
        self.records = records
        self.owners = owners

    def add(self, record: Record, owner: str) -> None:
        _insert_at(self.records, self.owners, record, owner)

    def discard(self, record: Record, owner: str) -> None:
        at = _position(self.records, self.owners, record, owner)
        if at >= 0:
            del self.records[at]
            del self.owners[at]


def _position(records: Sequence[Record], owners: Sequence[str], record: Record,
              owner: str) -> int:
    """Where ``owner``'s first ``record`` is among a name's holders; -1 if nowhere."""
    for at, other in enumerate(records):
        if other == record and owners[at] == owner:
            return at
    return -1


class PtrTable(Mapping[str, tuple[PtrEntry, ...]]):
    """``Snapshot.ptr`` as PTR entries (the first holder per network, its target, its TTL),
    made from the holders on demand; the answer path reads ``ptr_holders`` directly."""

    def __init__(self, holders: Mapping[str, Record | PtrHolders]) -> None:
        self._holders = holders

    def __getitem__(self, address: str) -> tuple[PtrEntry, ...]:
        entries: list[PtrEntry] = []
        for record in self._holders[address].records:
            assert record.ptr is not None
            entry = (record.network, record.ptr, record.ttl)
            if all(e[:2] != entry[:2] for e in entries):
                entries.append(entry)
        return tuple(entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._holders)

    def __len__(self) -> int:
        return len(self._holders)


class Snapshot:
    """The whole registry, with the indexes the answer logic reads.

    ``Snapshot.build`` makes one from parts (commands without a daemon, tests); the daemon's
    registry keeps one and changes it in place with ``apply`` (``generation`` counts changes).
    The mappings are the registry's own: read them, never change them.
    """

    __slots__ = ("generation", "networks", "clients", "by_network", "global_names",
                 "wild_by_network", "global_wild", "private", "ptr_holders", "parts",
                 "source_names", "_network_holders", "_client_holders")

    def __init__(self, generation: int = 0) -> None:
        self.generation = generation
        self.networks: dict[str, Network] = {}
        self.clients: dict[str, Client] = {}
        self.by_network: dict[str, Table] = {}
        self.global_names: Table = {}
        # Wildcard owners by the suffix below which they answer ("*.web" under "web").
        self.wild_by_network: dict[str, Table] = {}
        self.global_wild: Table = {}
        # Names only one client address sees: address -> name -> holders.
        self.private: dict[str, Table] = {}
        # Per address, the records with a PTR target for it, in build order.
        self.ptr_holders: dict[str, Record | PtrHolders] = {}
        self.parts: dict[str, Store] = {}
        # Source kind ("hosts", "docker", ...; "unknown" for none) -> the (network, name) pairs
        # of ``by_network`` and ``global_names`` that a record of that kind holds: the metrics'
        # names per source. Kept by each delta for the names it touches, so that reading it
        # (every scrape) walks nothing and a change costs nothing beyond its own names.
        self.source_names: dict[str, int] = {}
        # Every part's networks and clients by name/address, in part order: the first network
        # of a name wins; clients of one address from several parts see all their networks.
        self._network_holders: dict[str, list[tuple[str, Network]]] = {}
        self._client_holders: dict[str, list[tuple[str, Client]]] = {}

    @classmethod
    def build(cls, generation: int, parts: Iterable[SourcePart]) -> Snapshot:
        snapshot = cls(generation)
        with gc_paused():
            for number, part in enumerate(parts):
                snapshot.apply(f"{number:08d}", part, SourcePart())
        return snapshot

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(0)

    @property
    def ptr(self) -> Mapping[str, tuple[PtrEntry, ...]]:
        return PtrTable(self.ptr_holders)

    @property
    def records(self) -> tuple[Record, ...]:
        """Every part's records, parts in order (O(records): for commands and logs)."""
        return tuple(r for name in sorted(self.parts) for r in self.parts[name].records.listed())

    def name_count(self) -> int:
        return (len(self.global_names) + len(self.global_wild)
                + sum(len(names) for names in self.by_network.values())
                + sum(len(names) for names in self.wild_by_network.values())
                + sum(len(names) for names in self.private.values()))

    # --- deltas ----------------------------------------------------------------------------

    def apply(self, owner: str, added: SourcePart, removed: SourcePart,
              touched: Touched | None = None) -> Touched:
        """Take ``removed`` (one occurrence each; what the part does not hold is ignored), then
        add ``added``, to the part ``owner``. Returns what changed."""
        touched = Touched() if touched is None else touched
        store = self.parts.get(owner)
        if store is None:
            if not (added.networks or added.records or added.clients):
                return touched
            store = self.parts[owner] = Store()
        for record in removed.records:
            if store.records.discard(record):
                self._unindex(owner, record, touched)
        for client in removed.clients:
            if store.clients.discard(client):
                self._client_left(owner, client, touched)
        for network in removed.networks:
            if store.networks.discard(network):
                self._network_left(owner, network, touched)
        for network in added.networks:
            store.networks.add(network)
            self._network_came(owner, network, touched)
        for client in added.clients:
            store.clients.add(client)
            self._client_came(owner, client, touched)
        records = store.records
        index = self._index
        pending: Pending = {}
        for record in added.records:
            records.add(record)
            index(owner, record, touched, pending)
        self._settle(pending)
        return touched

    def drop(self, owner: str) -> Touched | None:
        """Take away the part ``owner`` whole; None if there was none."""
        store = self.parts.get(owner)
        if store is None:
            return None
        touched = self.apply(owner, SourcePart(), store.part())
        del self.parts[owner]
        return touched

    # --- records ---------------------------------------------------------------------------

    def _tables(self, record: Record, touched: Touched,
                create: bool) -> Iterator[tuple[Table, str, bool]]:
        """Each (name table, key, whether ``source_names`` counts it) that holds ``record``,
        noting in ``touched`` what it is; tables that are not there are made (``create``) or
        skipped. Wildcard owners and private names are not counted."""
        names = record.names
        clients = record.clients
        unique_names = names if len(names) == 1 else dict.fromkeys(names)
        if clients:
            if not names:
                return
            for address in clients:  # as listed: an address twice holds the record twice
                table = self.private.get(address)
                if table is None:
                    if not create:
                        continue
                    table = self.private[address] = {}
                for name in unique_names:
                    touched.private_name(address, name)
                    yield table, name, False
            return
        network = record[3]
        for name in unique_names:
            touched.name(network, name)
            wild = name.startswith("*.")
            if network is None:
                table = self.global_wild if wild else self.global_names
            else:
                tables = self.wild_by_network if wild else self.by_network
                found = tables.get(network)
                if found is None:
                    if not create:
                        continue
                    found = tables[network] = {}
                table = found
            if wild:
                touched.wild = True
                yield table, name[2:], False
            else:
                yield table, name, True

    def _index(self, owner: str, record: Record, touched: Touched, pending: Pending) -> None:
        """Index ``record`` (just counted in its part). A name that already has a holder is
        gathered in ``pending`` and made once at the end of the delta (``_settle``): a name
        held by thousands of records (a scaled service's tasks, a test's shared name) is then
        not copied once per record."""
        for table, key, counted in self._tables(record, touched, True):
            held = table.get(key)
            if held is None:
                table[key] = record if alone_holds(record) else group_of((record,), (owner,))
                if counted:  # inline: once per name of every record a load adds
                    counts = self.source_names
                    source = record[6] or "unknown"
                    counts[source] = counts.get(source, 0) + 1
                continue
            slot = (id(table), key)
            gathered = pending.get(slot)
            if gathered is None:
                if type(held) is Record:
                    records, owners = [held], [self._owner_of(held, record, owner)]
                else:
                    assert isinstance(held, Group)
                    records, owners = list(held.records), list(held.owners)
                gathered = pending[slot] = (table, key, records, owners,
                                            set() if counted else None)
            _insert_at(gathered[2], gathered[3], record, owner)
            if counted:
                gathered[4].add(record.source or "unknown")  # type: ignore[union-attr]
        if record[4] is not None and not record.clients:
            holders = self.ptr_holders
            for address in unique(record.ipv4 + record.ipv6):
                touched.address(address)
                ptrs = holders.get(address)
                if ptrs is None:
                    holders[address] = record
                    continue
                if type(ptrs) is Record:
                    ptrs = holders[address] = PtrHolders(
                        [ptrs], [self._owner_of(ptrs, record, owner)])
                assert isinstance(ptrs, PtrHolders)
                ptrs.add(record, owner)

    def _settle(self, pending: Pending) -> None:
        for table, key, records, owners, added in pending.values():
            if added:
                # Holders only join here (the delta's removals came first): a kind of source
                # counts the name once it has its first holder of that kind. The name's
                # holders are mostly of one kind, so each check stops at the first one.
                held = table[key].records
                for source in added:
                    if not _held_by(held, source):
                        self._count(source, 1)
            table[key] = group_of(tuple(records), tuple(owners))

    def _count(self, source: str, step: int) -> None:
        counts = self.source_names
        count = counts.get(source, 0) + step
        if count:
            counts[source] = count
        else:
            del counts[source]

    def _owner_of(self, held: Record, record: Record, owner: str) -> str:
        """The part of a name's only holder ``held``, as ``record`` of ``owner`` (counted
        already, not indexed yet) joins it: the one part that lists it besides that."""
        for name, store in self.parts.items():
            count = store.records.items.get(held, 0)
            if name == owner and held == record:
                count -= 1
            if count > 0:
                return name
        raise AssertionError(f"{held!r} is held but listed by no part")

    def _unindex(self, owner: str, record: Record, touched: Touched) -> None:
        for table, key, counted in self._tables(record, touched, False):
            held = table.get(key)
            if held is None:
                continue
            if type(held) is Record:
                if held == record:
                    del table[key]
                    if counted:
                        self._count(record.source or "unknown", -1)
                continue
            assert isinstance(held, Group)
            records, owners = held.records, held.owners
            at = _position(records, owners, record, owner)
            if at < 0:
                continue
            records = records[:at] + records[at + 1:]
            owners = owners[:at] + owners[at + 1:]
            if not records:
                del table[key]
            elif len(records) == 1 and alone_holds(records[0]):
                table[key] = records[0]
            else:
                table[key] = group_of(records, owners)
            if counted:
                source = record.source or "unknown"
                if not _held_by(records, source):  # its last holder of that kind went
                    self._count(source, -1)
        if record[4] is not None and not record.clients:
            holders = self.ptr_holders
            for address in unique(record.ipv4 + record.ipv6):
                touched.address(address)
                ptrs = holders.get(address)
                if ptrs is None:
                    continue
                if type(ptrs) is Record:
                    if ptrs == record:
                        del holders[address]
                    continue
                assert isinstance(ptrs, PtrHolders)
                ptrs.discard(record, owner)
                if len(ptrs.records) == 1:
                    holders[address] = ptrs.records[0]
        self._prune(record)

    def _prune(self, record: Record) -> None:
        """No empty tables: a network whose last name went is not listed, as in a build."""
        for address in record.clients:
            if not self.private.get(address, True):
                del self.private[address]
        network = record[3]
        if network is not None:
            if not self.by_network.get(network, True):
                del self.by_network[network]
            if not self.wild_by_network.get(network, True):
                del self.wild_by_network[network]

    # --- networks and clients --------------------------------------------------------------

    def _network_came(self, owner: str, network: Network, touched: Touched) -> None:
        holders = self._network_holders.setdefault(network.name, [])
        _insert_owned(holders, owner, network)
        self._network_now(network.name, holders, touched)

    def _network_left(self, owner: str, network: Network, touched: Touched) -> None:
        holders = self._network_holders.get(network.name, [])
        _remove_owned(holders, owner, network)
        if not holders:
            self._network_holders.pop(network.name, None)
        self._network_now(network.name, holders, touched)

    def _network_now(self, name: str, holders: list[tuple[str, Network]],
                     touched: Touched) -> None:
        now = holders[0][1] if holders else None
        if self.networks.get(name) != now:
            touched.networks = True
            if now is None:
                del self.networks[name]
            else:
                self.networks[name] = now

    def _client_came(self, owner: str, client: Client, touched: Touched) -> None:
        holders = self._client_holders.setdefault(client.address, [])
        _insert_owned(holders, owner, client)
        self._client_now(client.address, holders, touched)

    def _client_left(self, owner: str, client: Client, touched: Touched) -> None:
        holders = self._client_holders.get(client.address, [])
        _remove_owned(holders, owner, client)
        if not holders:
            self._client_holders.pop(client.address, None)
        self._client_now(client.address, holders, touched)

    def _client_now(self, address: str, holders: list[tuple[str, Client]],
                    touched: Touched) -> None:
        if not holders:
            now = None
        elif len(holders) == 1:
            now = holders[0][1]
        else:  # the same address seen by two parts: it sees both sets of networks
            first = holders[0][1]
            merged = tuple(dict.fromkeys(n for _, c in holders for n in c.networks))
            now = Client(address, merged, first.container)
        if self.clients.get(address) != now:
            touched.clients.add(address)
            if now is None:
                del self.clients[address]
            else:
                self.clients[address] = now


def _held_by(records: Iterable[Record], source: str) -> bool:
    """Whether a record of the kind ``source`` ("unknown" for none) is among ``records``."""
    return any((record[6] or "unknown") == source for record in records)


def _insert_at(records: list[Record], owners: list[str], record: Record, owner: str) -> None:
    """Put ``record`` after the holders of every part sorted up to ``owner`` (build order)."""
    at = len(owners)
    while at and owners[at - 1] > owner:
        at -= 1
    records.insert(at, record)
    owners.insert(at, owner)


def _insert_owned(holders: list[tuple[str, T]], owner: str, item: T) -> None:
    at = len(holders)
    while at and holders[at - 1][0] > owner:
        at -= 1
    holders.insert(at, (owner, item))


def _remove_owned(holders: list[tuple[str, T]], owner: str, item: T) -> None:
    for at, held in enumerate(holders):
        if held[0] == owner and held[1] == item:
            del holders[at]
            return
