"""A Record keeps every field it is made with (the rare ones in its extra tuple), is immutable,
hashable and equal by value, copies and pickles whole, and holds a name by itself; a Group
lists its records' addresses once each."""

from __future__ import annotations

import copy
import pickle

import pytest

from discovery.registry.values import Group, Record, alone_holds, group_of

FULL = dict(names=("web", "alias"), ipv4=("10.0.0.2",), ipv6=("fd00::2",), network="net",
            ptr="web.net", srv=(("tcp", 80),), srv_target="web.net", origin="c1", source="docker",
            ttl=30, srv_names=(("_http._tcp", 80),), clients=("10.0.0.9",), cname="db",
            data=((16, b"\x01x"),))


def test_every_field_is_kept() -> None:
    record = Record(**FULL)  # type: ignore[arg-type]
    for name, value in FULL.items():
        assert getattr(record, name) == value
    plain = Record(names=("a",))
    assert (plain.ttl, plain.srv, plain.clients, plain.cname, plain.data) == (None, (), (), None,
                                                                              ())
    assert plain[7] is None  # no extra tuple for a record with none of the rare fields
    assert plain[0] == "a" and plain.names == ("a",)  # one name: the string, not a tuple
    assert "ttl=30" in repr(record) and repr(plain) == "Record(names=('a',))"


def test_value_semantics() -> None:
    record = Record(**FULL)  # type: ignore[arg-type]
    twin = Record(**FULL)  # type: ignore[arg-type]
    assert record == twin and hash(record) == hash(twin) and len({record, twin}) == 1
    assert record != Record(**{**FULL, "ttl": 31})  # type: ignore[arg-type]
    assert copy.deepcopy(record) == record and pickle.loads(pickle.dumps(record)) == record
    with pytest.raises(AttributeError):
        record.ttl = 5  # type: ignore[misc]


def test_the_ptr_of_a_hosts_line_is_its_first_name() -> None:
    record = Record(names=("host1",), ipv4=("10.0.0.1",), ptr="".join(["host", "1"]))
    assert record.ptr is record.names[0]  # one string, not two


def test_a_record_holds_a_name_alone_unless_it_lists_an_address_twice() -> None:
    record = Record(names=("a",), ipv4=("10.0.0.1", "10.0.0.2"))
    assert record.records == (record,) and alone_holds(record)
    twice = Record(names=("a",), ipv4=("10.0.0.1", "10.0.0.1"))
    assert not alone_holds(twice)
    group = group_of((twice, record), ("x", "y"))
    assert group == Group((twice, record), ("10.0.0.1", "10.0.0.2"), (), ("x", "y"))
