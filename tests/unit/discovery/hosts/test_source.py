"""Hosts-file parsing (pure)."""

from __future__ import annotations

from discovery.hosts.source import parse_hosts


def test_every_name_on_a_line_is_an_alias_of_the_first() -> None:
    records, problems = parse_hosts(
        "# comment\n10.0.0.1  Alpha beta.Example. gamma # trailing\n\n::1 localhost\n", "h")
    assert problems == []
    first, second = records
    assert first.names == ("alpha", "beta.example", "gamma")
    assert first.ptr == "Alpha" and first.ipv4 == ("10.0.0.1",) and first.origin == "h:2"
    assert second.ipv6 == ("::1",) and second.names == ("localhost",)


def test_bad_lines_are_reported_and_skipped() -> None:
    records, problems = parse_hosts("10.0.0.300 bad\n10.0.0.1\nnot-an-ip name\n10.0.0.2 ok\n",
                                    "h")
    assert [r.names for r in records] == [("ok",)]
    assert problems == [
        "h:1: '10.0.0.300' is not an IP address",
        "h:2: an address without a name",
        "h:3: 'not-an-ip' is not an IP address",
    ]
