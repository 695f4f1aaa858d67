"""``--forward-zone`` parsing, and the forward slice's defaults being Config's."""

from __future__ import annotations

import dataclasses

import pytest

from resolver.config.settings import Config
from resolver.dns.addresses import HostPort
from resolver.forward.settings import ForwardSettings, ForwardZone, parse_forward_zone


@pytest.mark.parametrize(("text", "zone"), [
    ("Corp.Example.=10.0.0.1", ForwardZone("corp.example", HostPort("10.0.0.1", 53))),
    ("corp.example=[fd00::1]:5353", ForwardZone("corp.example", HostPort("fd00::1", 5353))),
    (".=127.0.0.1:5301", ForwardZone("", HostPort("127.0.0.1", 5301))),
])
def test_parse(text: str, zone: ForwardZone) -> None:
    assert parse_forward_zone(text) == zone


def test_str() -> None:
    assert str(parse_forward_zone("a.b=[::1]:53")) == "a.b=[::1]:53"
    assert str(ForwardZone("", HostPort("127.0.0.1", 53))) == ".=127.0.0.1:53"


@pytest.mark.parametrize(("text", "message"), [
    ("corp.example", "expected ZONE=ADDR"),
    ("a..b=10.0.0.1", "is not a domain name"),
    ("x" * 64 + "=10.0.0.1", "is not a domain name"),
    ("corp=server.example", "not an IP address"),
])
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_forward_zone(text)


def test_defaults_are_configs() -> None:
    # listen is the exception: it is the daemon's own addresses, always cut from the Config
    # (slices.forward_settings), and () means "no loop to filter" for a bare forwarder.
    for field in dataclasses.fields(ForwardSettings):
        if field.name == "listen":
            continue
        assert getattr(ForwardSettings(), field.name) == getattr(Config(), field.name), field.name
