"""Upstream addresses as the settings give them: plain ``ADDR[:PORT]`` and ``tls://...#NAME``."""

from __future__ import annotations

import pytest

from resolver.dns.addresses import HostPort, parse_upstream


def test_plain_and_tls_upstreams() -> None:
    assert parse_upstream("10.0.0.1") == HostPort("10.0.0.1", 53)
    assert parse_upstream("tls://10.0.0.1#Dns.Example.") == HostPort("10.0.0.1", 853,
                                                                     "dns.example")
    tls6 = parse_upstream("TLS://[fd00::1]:8853#dns.example")
    assert tls6 == HostPort("fd00::1", 8853, "dns.example")
    assert str(tls6) == "tls://[fd00::1]:8853#dns.example"


@pytest.mark.parametrize("bad", ["tls://10.0.0.1", "tls://10.0.0.1#", "tls://host#a.b",
                                 "tls://10.0.0.1#a..b"])
def test_a_tls_upstream_needs_an_ip_and_a_name(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_upstream(bad)
