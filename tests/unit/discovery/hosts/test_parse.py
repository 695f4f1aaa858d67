"""Hosts-file lines into records (pure): the fast record maker and shared strings give exactly
what the plain dataclass constructor gives."""

from __future__ import annotations

import ipaddress

from discovery.hosts.parse import (
    RECORD_FIELDS,
    _address,
    make_record,
    parse_hosts,
    parse_lines,
    shown,
)
from discovery.registry.model import Record


def test_every_name_on_a_line_is_an_alias_of_the_first() -> None:
    records, problems = parse_hosts(
        "# comment\n10.0.0.1  Alpha beta.Example. gamma # trailing\n\n::1 localhost\n", "h")
    assert problems == []
    first, second = records
    assert first.names == ("alpha", "beta.example", "gamma")
    assert first.ptr == "Alpha" and first.ipv4 == ("10.0.0.1",) and first.origin == "h:2"
    assert second.ipv6 == ("::1",) and second.names == ("localhost",)


def test_bad_lines_are_reported_and_skipped() -> None:
    records, problems = parse_hosts("10.0.0.300 bad\n10.0.0.1\nnot-an-ip name\n10.0.0.2 ok\n"
                                    "10.0.0.3 " + "l" * 64 + ".x\n10.0.0.4 a\x00b\n", "h")
    assert [r.names for r in records] == [("ok",)]
    assert problems == [
        "h:1: '10.0.0.300' is not an IP address",
        "h:2: an address without a name",
        "h:3: 'not-an-ip' is not an IP address",
        f"h:5: '{'l' * 64}.x' is not a domain name",
        "h:6: holds bytes other than printable ASCII: 10.0.0.4 a\\000b",
    ]


def test_lines_give_one_entry_each_numbered_from_first() -> None:
    found, problems = parse_lines(["", "10.0.0.1 a", "# c", "x y"], "f", first=10)
    assert [r.origin if r else None for r in found] == [None, "f:11", None, None]
    assert problems == ["f:13: 'x' is not an IP address"]


def test_unnumbered_records_share_their_origin_and_names() -> None:
    origin = "/etc/hosts.big"
    found, _ = parse_lines(["10.0.0.1 web", "10.0.0.1 db", "10.0.0.2 Mixed"], origin,
                           numbered=False)
    web, db, mixed = found
    assert web is not None and db is not None and mixed is not None
    assert web.origin is origin and db.origin is origin
    assert web.ptr is web.names[0]  # already lower case: one string
    assert web.ipv4[0] is db.ipv4[0]  # a repeated address: one string
    assert mixed.ptr == "Mixed" and mixed.names == ("mixed",)


def test_the_record_maker_equals_the_constructor() -> None:
    made = make_record(("a", "b"), ("10.0.0.1",), ("fd00::1",), "A", "o")
    built = Record(names=("a", "b"), ipv4=("10.0.0.1",), ipv6=("fd00::1",), ptr="A",
                   origin="o", source="hosts")
    assert made == built and hash(made) == hash(built) and type(made) is type(built)
    assert all(getattr(made, key) == getattr(built, key) for key in RECORD_FIELDS)


def test_addresses_are_canonical() -> None:
    assert _address("10.1.2.3") == (("10.1.2.3",), ())
    assert _address("FD00:0::1") == ((), ("fd00::1",))
    assert _address("::ffff:1.2.3.4") == ((), (str(ipaddress.ip_address("::ffff:1.2.3.4")),))
    assert _address("1.2.3") is None and _address("a\x00b") is None


def test_shown_escapes_every_byte_outside_printable_ascii() -> None:
    raw = b"a\\b\xff\x00".decode("utf-8", "surrogateescape")
    assert shown(raw) == "a\\092b\\255\\000"
    assert shown("x" * 100, limit=5) == "xxxxx..."
