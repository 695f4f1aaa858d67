"""The fast hosts parser and registry build give exactly what the plain versions gave.

The plain versions below are the original, obviously-correct code; the daemon's are rewritten
for 100,000-name registries, and hypothesis checks the two agree on every input it can find."""

from __future__ import annotations

import gc
import ipaddress
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from discovery.hosts.source import parse_hosts
from discovery.registry.model import NameSet, Record, Snapshot, SourcePart


def plain_parse_hosts(text: str, origin: str) -> tuple[list[Record], list[str]]:
    records: list[Record] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 2:
            problems.append(f"{origin}:{number}: an address without a name")
            continue
        try:
            address = ipaddress.ip_address(fields[0])
        except ValueError:
            problems.append(f"{origin}:{number}: {fields[0]!r} is not an IP address")
            continue
        names = tuple(dict.fromkeys(name.rstrip(".").lower() for name in fields[1:]))
        v4 = (str(address),) if address.version == 4 else ()
        v6 = (str(address),) if address.version == 6 else ()
        records.append(Record(names=names, ipv4=v4, ipv6=v6, network=None,
                              ptr=fields[1].rstrip("."), origin=f"{origin}:{number}",
                              source="hosts"))
    return records, problems


Shape = tuple[tuple[Record, ...], tuple[str, ...], tuple[str, ...]]


def plain_name_sets(records: list[Record]) -> dict[str, Shape]:
    grouped: dict[str, list[Record]] = {}
    for record in records:
        for name in dict.fromkeys(record.names):
            grouped.setdefault(name, []).append(record)
    return {
        name: (tuple(group), tuple(dict.fromkeys(a for r in group for a in r.ipv4)),
               tuple(dict.fromkeys(a for r in group for a in r.ipv6)))
        for name, group in grouped.items()
    }


def shapes(table: Mapping[str, NameSet]) -> dict[str, Shape]:
    """What a name set answers with, whichever form it has (a record alone, or a group)."""
    return {name: (held.records, held.ipv4, held.ipv6) for name, held in table.items()}


addresses = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str),
    st.sampled_from(["010.1.1.1", "1.2.3", "256.0.0.1", "::ffff:1.2.3.4", "FD00::1", "x",
                     "fe80::1%eth0", "1.2.3.4.", "0x1.2.3.4", "::1"]))
names = st.text(alphabet="abcXYZ-.0", min_size=1, max_size=8)
lines = st.one_of(
    st.builds(lambda a, ns, c: " ".join([a, *ns]) + c, addresses, st.lists(names, max_size=4),
              st.sampled_from(["", " # note", "#x", "\t"])),
    st.sampled_from(["", "# only a comment", "   ", "\t10.0.0.1\tTab"]))


@given(st.lists(lines, max_size=20))
@settings(max_examples=300, deadline=None)
def test_fast_hosts_parser_matches_the_plain_one(text_lines: list[str]) -> None:
    text = "\n".join(text_lines)
    assert parse_hosts(text, "h") == plain_parse_hosts(text, "h")


records = st.builds(
    Record,
    names=st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=3).map(tuple),
    ipv4=st.lists(st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3"]), max_size=3).map(tuple),
    ipv6=st.lists(st.sampled_from(["fd00::1", "fd00::2"]), max_size=2).map(tuple),
    network=st.sampled_from([None, "net1", "net2"]))


@given(st.lists(records, max_size=12))
@settings(max_examples=300, deadline=None)
def test_fast_build_matches_the_plain_one(found: list[Record]) -> None:
    snapshot = Snapshot.build(1, [SourcePart(records=tuple(found))])
    assert shapes(snapshot.global_names) == plain_name_sets([r for r in found
                                                              if r.network is None])
    for network in ("net1", "net2"):
        on_network = [r for r in found if r.network == network]
        assert shapes(snapshot.by_network.get(network, {})) == plain_name_sets(on_network)


def test_a_name_one_record_holds_is_held_by_that_record() -> None:
    record = Record(names=("web", "alias", "abc123"), ipv4=("10.0.0.1",), network="net")
    names = Snapshot.build(1, [SourcePart(records=(record,))]).by_network["net"]
    assert names["web"] is names["alias"] is names["abc123"] is record


def test_the_collector_is_back_on_after_a_build_even_a_failed_one() -> None:
    assert gc.isenabled()
    Snapshot.build(1, [SourcePart(records=(Record(names=("a",)),))])
    assert gc.isenabled()
    try:
        Snapshot.build(1, [SourcePart(records=(None,))])  # type: ignore[arg-type]
    except (AttributeError, TypeError):
        pass
    assert gc.isenabled()
