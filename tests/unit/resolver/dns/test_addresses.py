"""HostPort parsing and printing, and the address questions the ACL and loop filter ask."""

from __future__ import annotations

import pytest

from resolver.dns.addresses import HostPort, is_local_address, is_loopback, parse_hostport


@pytest.mark.parametrize(("text", "expected"), [
    ("1.2.3.4", HostPort("1.2.3.4", 53)),
    (" 1.2.3.4:5353 ", HostPort("1.2.3.4", 5353)),
    ("[::1]:5353", HostPort("::1", 5353)),
    ("[::1]", HostPort("::1", 53)),
    ("fd00:0::1", HostPort("fd00::1", 53)),  # normalised, and a bare IPv6 takes the default
])
def test_parse(text: str, expected: HostPort) -> None:
    assert parse_hostport(text, 53) == expected


@pytest.mark.parametrize(("text", "default", "message"), [
    ("example.com:53", 53, "not an IP address"),
    ("[::1", 53, "missing ']'"),
    ("[::1]x", 53, "expected ':PORT'"),
    ("1.2.3.4:0", 53, "port must be 1-65535"),
    ("1.2.3.4:65536", 53, "port must be 1-65535"),
    ("1.2.3.4:x", 53, "port must be 1-65535"),
    ("1.2.3.4", None, "a port is required"),
])
def test_parse_errors(text: str, default: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_hostport(text, default)


def test_str_round_trips() -> None:
    for value in (HostPort("127.0.0.1", 53), HostPort("fd00::1", 5353)):
        assert parse_hostport(str(value), None) == value
    assert str(HostPort("::1", 53)) == "[::1]:53"


def test_loopback() -> None:
    assert is_loopback("127.8.9.10") and is_loopback("::1") and is_loopback("::1%lo")
    assert not is_loopback("10.0.0.1") and not is_loopback("not-an-ip")


def test_local_address() -> None:
    assert is_local_address("127.0.0.1")
    # TEST-NET-1 is never assigned to this host, so it cannot be bound.
    assert not is_local_address("192.0.2.1")
