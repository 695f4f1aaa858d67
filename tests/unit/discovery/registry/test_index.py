"""The incrementally kept indexes equal a whole build from the same parts, after any sequence of
source events: containers (records on networks, with PTRs and client entries) added, changed
and removed, networks coming and going, hosts-like global records with duplicates, wildcard
owners, names private to one client, whole parts replaced, sources removed.

The model of the parts is the registry's documented semantics: ``change`` takes one occurrence
of each removed item (what a part does not hold is ignored) and appends what it adds; ``update``
is the multiset difference applied as such a change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from discovery.registry.index import TOUCHED_LIMIT, Counts, Touched, multiset_delta
from discovery.registry.model import Client, NameSet, Network, Record, Snapshot, SourcePart
from discovery.registry.registry import Registry

T = TypeVar("T")
SOURCES = ("docker:a", "hosts", "static", "swarm:b")
NETWORKS = (Network("n1", source="docker"), Network("n2", source="docker"),
            Network("n1", internal=True, source="swarm"), Network("n.3", source="docker"))
CLIENT_ADDRESSES = ("10.0.0.1", "10.0.0.2")
CLIENTS = (Client("10.0.0.1", ("n1",), "c1"), Client("10.0.0.1", ("n2",), "c1"),
           Client("10.0.0.2", ("n1", "n2"), "c2"))
NAMES = ("web", "db", "web.n1", "a.b", "*.web", "*.b", "x.web")
V4 = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
V6 = ("fd00::1", "fd00::2")

records = st.builds(
    Record,
    names=st.lists(st.sampled_from(NAMES), min_size=0, max_size=3).map(tuple),
    ipv4=st.lists(st.sampled_from(V4), max_size=2).map(tuple),
    ipv6=st.lists(st.sampled_from(V6), max_size=1).map(tuple),
    network=st.sampled_from([None, None, "n1", "n2", "n.3"]),
    ptr=st.sampled_from([None, "web.n1", "Web.N2", "db"]),
    ttl=st.sampled_from([None, None, 30]),
    clients=st.sampled_from([(), (), (), ("10.0.0.1",), ("10.0.0.2", "10.0.0.1")]),
    cname=st.sampled_from([None, None, None, "db"]),
    data=st.sampled_from([(), (), ((16, b"\x03abc"),)]),
    source=st.sampled_from(["hosts", "docker", ""]),
)
parts = st.builds(SourcePart,
                  networks=st.lists(st.sampled_from(NETWORKS), max_size=2).map(tuple),
                  records=st.lists(records, max_size=4).map(tuple),
                  clients=st.lists(st.sampled_from(CLIENTS), max_size=2).map(tuple))
# (what, source, delta or part, which held items to remove)
events = st.one_of(
    st.tuples(st.just("change"), st.sampled_from(SOURCES), parts,
              st.lists(st.integers(0, 20), max_size=3)),
    st.tuples(st.just("update"), st.sampled_from(SOURCES), parts, st.just([])),
    st.tuples(st.just("remove"), st.sampled_from(SOURCES), st.just(SourcePart()),
              st.just([])),
)


def without(items: list[T], removed: tuple[T, ...]) -> list[T]:
    kept = list(items)
    for item in removed:
        if item in kept:
            kept.remove(item)
    return kept


@dataclass
class Model:
    """The parts as the registry's semantics make them, for a build to compare with."""

    parts: dict[str, tuple[list[Network], list[Record], list[Client]]] = field(
        default_factory=dict)

    def change(self, source: str, added: SourcePart, removed: SourcePart) -> None:
        if source not in self.parts:
            if not (added.networks or added.records or added.clients):
                return
            self.parts[source] = ([], [], [])
        networks, held, clients = self.parts[source]
        self.parts[source] = (without(networks, removed.networks) + list(added.networks),
                              without(held, removed.records) + list(added.records),
                              without(clients, removed.clients) + list(added.clients))

    def held(self, source: str) -> SourcePart:
        networks, held, clients = self.parts.get(source, ([], [], []))
        return SourcePart(tuple(networks), tuple(held), tuple(clients))

    def build(self) -> Snapshot:
        return Snapshot.build(0, [self.held(source) for source in sorted(self.parts)])


def run(registry: Registry, model: Model, event: tuple[str, str, SourcePart, list[int]]) -> None:
    what, source, part, picks = event
    if what == "remove":
        registry.remove(source)
        model.parts.pop(source, None)
        return
    if what == "update":
        if source not in model.parts:
            model.parts[source] = ([], [], [])
        held = registry.snapshot.parts[source] if source in registry.snapshot.parts else None
        registry.update(source, part)
        if held is None:
            model.parts[source] = (list(part.networks), list(part.records), list(part.clients))
            return
        # The same delta the registry applies: the multiset difference, new items in order.
        old = model.held(source)

        def delta(new: tuple[Any, ...], have: tuple[Any, ...]) -> tuple[list[Any], list[Any]]:
            counts: Counts[Any] = Counts()
            for item in have:
                counts.add(item)
            return multiset_delta(new, counts)

        gone_n, new_n = delta(part.networks, old.networks)
        gone_r, new_r = delta(part.records, old.records)
        gone_c, new_c = delta(part.clients, old.clients)
        model.change(source, SourcePart(tuple(new_n), tuple(new_r), tuple(new_c)),
                     SourcePart(tuple(gone_n), tuple(gone_r), tuple(gone_c)))
        return
    # A change: remove some items the part holds (and one it may not), add the rest.
    held_now = model.held(source)
    gone_records = tuple(held_now.records[i] for i in picks if i < len(held_now.records))
    gone_records += part.records[:1] if picks and picks[0] > 15 else ()  # perhaps not held
    gone_networks = held_now.networks[:1] if picks and picks[-1] % 3 == 0 else ()
    gone_clients = held_now.clients[:1] if picks and picks[-1] % 2 == 0 else ()
    removed = SourcePart(gone_networks, gone_records, gone_clients)
    registry.change(source, part, removed)
    model.change(source, part, removed)


def shapes(table: Mapping[str, NameSet]) -> dict[str, Any]:
    return {name: (held.records, held.ipv4, held.ipv6) for name, held in table.items()}


def assert_same_indexes(kept: Snapshot, built: Snapshot) -> None:
    assert kept.networks == built.networks
    assert kept.clients == built.clients
    assert shapes(kept.global_names) == shapes(built.global_names)
    assert shapes(kept.global_wild) == shapes(built.global_wild)
    for tables in ("by_network", "wild_by_network", "private"):
        mine, theirs = getattr(kept, tables), getattr(built, tables)
        assert set(mine) == set(theirs), tables
        for key in mine:
            assert shapes(mine[key]) == shapes(theirs[key]), (tables, key)
    assert dict(kept.ptr) == dict(built.ptr)
    assert sorted(map(repr, kept.records)) == sorted(map(repr, built.records))
    assert kept.name_count() == built.name_count()
    assert kept.source_names == walked_source_names(kept) == built.source_names


def walked_source_names(snapshot: Snapshot) -> dict[str, int]:
    """The metrics' names per source as a walk of every name finds them (what the registry
    keeps by delta instead): per kind of source, the (network, name) pairs of the network and
    global tables that a record of that kind holds."""
    counts: Counter[str] = Counter()
    for table in (*snapshot.by_network.values(), snapshot.global_names):
        for held in table.values():
            counts.update({record.source or "unknown" for record in held.records})
    return dict(counts)


@given(st.lists(events, max_size=25))
@settings(max_examples=400, deadline=None)
def test_deltas_keep_the_indexes_a_build_makes(sequence: list[Any]) -> None:
    registry, model = Registry(), Model()
    for event in sequence:
        run(registry, model, event)
        assert_same_indexes(registry.snapshot, model.build())
    for source in SOURCES:
        part = registry.part(source)
        if source not in model.parts:
            assert part is None
            continue
        assert part is not None and Counter(part.records) == Counter(model.held(source).records)
        assert Counter(part.clients) == Counter(model.held(source).clients)


def test_touched_names_what_changed() -> None:
    registry = Registry()
    seen: list[Touched] = []
    registry.watch(lambda snapshot, touched: seen.append(touched))
    web = Record(names=("web", "*.web"), ipv4=("10.0.0.5",), network="n1", ptr="web.n1")
    own = Record(names=("own",), ipv4=("10.0.0.6",), clients=("10.0.0.1",))
    registry.change("docker", SourcePart(networks=(NETWORKS[0],), records=(web, own),
                                         clients=(CLIENTS[0],)))
    registry.change("docker", removed=SourcePart(records=(web,)))
    first, second = seen
    assert first.networks and first.wild and ("n1", "web") in first.names
    assert ("10.0.0.1", "own") in first.private and "10.0.0.1" in first.clients
    assert not second.networks and second.names == {("n1", "web"), ("n1", "*.web")}
    assert second.ptr == {"10.0.0.5"} and not second.clients
    # A change nothing holds touches nothing and publishes nothing.
    assert not registry.change("docker", removed=SourcePart(records=(web,)))
    assert len(seen) == 2


def test_a_huge_change_is_reported_as_everything() -> None:
    registry = Registry()
    seen: list[Touched] = []
    registry.watch(lambda snapshot, touched: seen.append(touched))
    many = tuple(Record(names=(f"h{i}",), ipv4=("10.1.0.1",), ptr=f"h{i}")
                 for i in range(TOUCHED_LIMIT + 1))
    registry.change("hosts", SourcePart(records=many))
    assert seen[0].everything and not seen[0].names
    # A million lines of one address (a blocklist) share one PTR holder, in file order.
    assert registry.snapshot.ptr["10.1.0.1"][0] == (None, "h0", None)
    registry.change("hosts", removed=SourcePart(records=many[:1]))
    assert registry.snapshot.ptr["10.1.0.1"][0] == (None, "h1", None)


def test_holders_keep_build_order_across_parts() -> None:
    """A record added later by a part sorted first comes first, as in a build."""
    registry = Registry()
    late = Record(names=("db",), ipv4=("10.0.0.9",), ptr="late", source="static")
    early = Record(names=("db",), ipv4=("10.0.0.9",), ptr="early", source="hosts")
    registry.change("static", SourcePart(records=(late,)))
    registry.change("hosts", SourcePart(records=(early,)))
    assert registry.snapshot.global_names["db"].records == (early, late)
    assert registry.snapshot.ptr["10.0.0.9"] == ((None, "early", None), (None, "late", None))


def test_names_per_source_follow_each_add_change_and_remove() -> None:
    registry = Registry()
    web = Record(("web", "web1"), ipv4=("10.0.0.2",), network="n1", source="docker")
    web2 = Record(("web",), ipv4=("10.0.0.3",), network="n1", source="docker")
    registry.change("docker:a", SourcePart(records=(web, web2)))
    assert registry.snapshot.source_names == {"docker": 2}  # web and web1 on n1
    # A hosts line for the same name on every network: another pair, "web" globally.
    line = Record(("web",), ipv4=("10.9.0.1",), source="hosts")
    registry.change("hosts", SourcePart(records=(line,)))
    assert registry.snapshot.source_names == {"docker": 2, "hosts": 1}
    # A container changes: web1 goes, its address and a new name come.
    moved = Record(("web", "api"), ipv4=("10.0.0.4",), network="n1", source="docker")
    registry.change("docker:a", SourcePart(records=(moved,)), SourcePart(records=(web,)))
    assert registry.snapshot.source_names == {"docker": 2, "hosts": 1}  # web, api
    # One of web's holders goes: web is still a docker name.
    registry.change("docker:a", removed=SourcePart(records=(web2,)))
    assert registry.snapshot.source_names == {"docker": 2, "hosts": 1}
    # A wildcard owner and a private name are not counted; a record without a source is.
    registry.change("static", SourcePart(records=(
        Record(("*.web",), ipv4=("10.0.0.9",), network="n1", source="static"),
        Record(("own",), ipv4=("10.0.0.8",), clients=("10.0.0.1",), source="static"),
        Record(("bare",), ipv4=("10.0.0.7",)))))
    assert registry.snapshot.source_names == {"docker": 2, "hosts": 1, "unknown": 1}
    registry.remove("static")
    registry.remove("hosts")
    registry.update("docker:a", SourcePart())
    assert registry.snapshot.source_names == {}
    assert walked_source_names(registry.snapshot) == {}
