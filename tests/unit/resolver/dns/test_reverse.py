"""Which reverse names cover only private or special-use addresses (pure)."""

from __future__ import annotations

import pytest

from resolver.dns.reverse import is_private_reverse


def labels(name: str) -> tuple[bytes, ...]:
    return tuple(label.encode() for label in name.split("."))


@pytest.mark.parametrize(("name", "private"), [
    ("1.0.0.127.in-addr.arpa", True),
    ("10.in-addr.arpa", True),
    ("5.4.17.172.in-addr.arpa", True),
    ("5.4.32.172.in-addr.arpa", False),  # just outside 172.16.0.0/12
    ("172.in-addr.arpa", False),  # covers public space too
    ("9.64.100.in-addr.arpa", True),  # RFC 6598 shared space
    ("8.8.8.8.in-addr.arpa", False),
    ("08.0.0.10.in-addr.arpa", False),  # not a decimal octet: not a reverse name
    ("D.F.ip6.arpa", True),
    ("8.e.f.ip6.arpa", True),
    ("c.e.f.ip6.arpa", False),
    (".".join("1" + "0" * 31) + ".ip6.arpa", True),  # ::1
    ("2.ip6.arpa", False),
    ("in-addr.arpa", False),
    ("web1.example", False),
])
def test_private_reverse(name: str, private: bool) -> None:
    assert is_private_reverse(labels(name)) is private
