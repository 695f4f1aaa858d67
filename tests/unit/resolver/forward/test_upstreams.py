"""Upstream selection without sockets to anywhere: resolv.conf reading and watching, the
systemd-resolved stub, the self-loop filter, zone routing, health, and the new settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resolver.config import settings as config_module
from resolver.config.settings import Config, ConfigError
from resolver.dns.addresses import HostPort
from resolver.forward.health import UpstreamHealth
from resolver.forward.settings import ForwardZone, parse_forward_zone
from resolver.forward.upstreams import (
    UpstreamSource,
    build_table,
    parse_resolv_conf,
    points_at,
    read_nameservers,
)

LISTEN = (HostPort("127.0.0.1", 5300),)


def test_resolv_conf_nameservers_in_order() -> None:
    text = """# generated
search example.test
nameserver 192.0.2.53   # primary
nameserver 2001:db8::53
nameserver not-an-address
; nameserver 192.0.2.99
nameserver fe80::1%eth0
nameserver 192.0.2.53
options ndots:2
"""
    assert parse_resolv_conf(text) == [HostPort("192.0.2.53", 53), HostPort("2001:db8::53", 53),
                                       HostPort("fe80::1%eth0", 53)]


def test_the_systemd_stub_is_looked_through(tmp_path: Path) -> None:
    stub = tmp_path / "resolv.conf"
    real = tmp_path / "systemd-resolv.conf"
    stub.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\n")
    real.write_text("nameserver 192.0.2.1\nnameserver 192.0.2.2\n")
    assert read_nameservers(stub, real) == [HostPort("192.0.2.1", 53), HostPort("192.0.2.2", 53)]
    # Not only the stub: the file is taken as it is.
    stub.write_text("nameserver 127.0.0.53\nnameserver 192.0.2.9\n")
    assert read_nameservers(stub, real) == [HostPort("127.0.0.53", 53), HostPort("192.0.2.9", 53)]
    # Only the stub, and nothing behind it: the stub it is.
    stub.write_text("nameserver 127.0.0.53\n")
    assert read_nameservers(stub, tmp_path / "absent") == [HostPort("127.0.0.53", 53)]


def test_the_stub_is_kept_while_registered_with_resolved(tmp_path: Path) -> None:
    stub, real = tmp_path / "resolv.conf", tmp_path / "systemd.conf"
    stub.write_text("nameserver 127.0.0.53\n")
    real.write_text("nameserver 192.0.2.1\n")
    assert read_nameservers(stub, real, keep_stub=True) == [HostPort("127.0.0.53", 53)]
    source = UpstreamSource(Config(resolv_conf=str(stub)), systemd_path=str(real))
    assert source.load(quiet=True).default == (HostPort("192.0.2.1", 53),)
    source.keep_stub_servers(True)  # what resolver/resolved/ does once registered
    assert source.table.default == (HostPort("127.0.0.53", 53),)


def test_resolv_conf_is_re_read_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 192.0.2.1\n")
    source = UpstreamSource(Config(listen=LISTEN, resolv_conf=str(path)),
                            systemd_path=str(tmp_path / "absent"))
    assert source.load().default == (HostPort("192.0.2.1", 53),)
    assert not source.poll()
    path.write_text("nameserver 192.0.2.2\nnameserver 192.0.2.3\n")
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    assert source.poll()
    assert source.table.default == (HostPort("192.0.2.2", 53), HostPort("192.0.2.3", 53))


def test_explicit_upstreams_ignore_resolv_conf(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 192.0.2.1\n")
    source = UpstreamSource(Config(listen=LISTEN, resolv_conf=str(path),
                                   upstreams=(HostPort("127.0.0.1", 5301),)))
    assert source.load().default == (HostPort("127.0.0.1", 5301),)
    path.write_text("nameserver 192.0.2.2\n")
    assert not source.poll()


def test_self_loop_detection() -> None:
    def local(host: str) -> bool:
        return host in ("127.0.0.1", "10.0.0.1", "::1")

    assert points_at(HostPort("127.0.0.1", 5300), LISTEN, local)
    assert not points_at(HostPort("127.0.0.1", 5301), LISTEN, local)
    assert not points_at(HostPort("127.0.0.2", 5300), LISTEN, local)
    wildcard4 = (HostPort("0.0.0.0", 53),)
    assert points_at(HostPort("10.0.0.1", 53), wildcard4, local)
    assert not points_at(HostPort("192.0.2.1", 53), wildcard4, local)
    assert not points_at(HostPort("::1", 53), wildcard4, local)  # IPv4 wildcard only
    assert points_at(HostPort("::1", 53), (HostPort("::", 53),), local)
    assert points_at(HostPort("10.0.0.1", 53), (HostPort("::", 53),), local)
    assert points_at(HostPort("0.0.0.0", 5300), LISTEN, local)


def test_zone_routing_takes_the_longest_match_by_whole_labels() -> None:
    a, b, c, d = (HostPort(f"192.0.2.{n}", 53) for n in range(1, 5))
    zones = [ForwardZone("corp.test", b), ForwardZone("dev.corp.test", c),
             ForwardZone("corp.test", d), ForwardZone("loop.test", LISTEN[0])]
    table = build_table([a, LISTEN[0]], zones, LISTEN)
    assert table.default == (a,)
    assert table.for_labels((b"www", b"CORP", b"test")) == (b, d)
    assert table.for_labels((b"x", b"dev", b"corp", b"test")) == (c,)
    assert table.for_labels((b"corp", b"test")) == (b, d)
    assert table.for_labels((b"notcorp", b"test")) == (a,)
    assert table.for_labels((b"x", b"loop", b"test")) == ()  # its only server was dockdns
    root = build_table([a], [ForwardZone("", b)], LISTEN)
    assert root.for_labels((b"anything",)) == (b,)


def test_health_skips_dead_upstreams_until_they_answer() -> None:
    a, b = HostPort("192.0.2.1", 53), HostPort("192.0.2.2", 53)
    health = UpstreamHealth(failures_to_down=2)
    health.failed(a, 0.0)
    assert health.order([a, b]) == [a, b]
    health.failed(a, 0.0)
    assert health.order([a, b]) == [b]
    assert health.down() == [a]
    health.failed(b, 0.0)
    health.failed(b, 0.0)
    assert health.order([a, b]) == []  # all down: fail at once, only the probes ask them
    health.succeeded(a)
    assert health.order([a, b]) == [a]
    health.forget_except({a})
    assert health.down() == []


def test_forward_zone_setting() -> None:
    assert parse_forward_zone("Corp.Test.=10.0.0.1") == \
        ForwardZone("corp.test", HostPort("10.0.0.1", 53))
    assert parse_forward_zone("corp.test=[fd00::1]:5353") == \
        ForwardZone("corp.test", HostPort("fd00::1", 5353))
    assert parse_forward_zone(".=10.0.0.2").zone == ""
    for bad in ("corp.test", "corp..test=10.0.0.1", "corp.test=host.example"):
        with pytest.raises(ValueError):
            parse_forward_zone(bad)


def test_forwarding_settings_from_flags_and_environment() -> None:
    config = config_module.build(
        {"forward_zones": ["corp.test=10.0.0.1", "dev.test=10.0.0.2:5353"],
         "cache_size": "500", "upstream_timeout": "0.5"},
        environ={"DOCKDNS_SERVE_STALE": "false", "DOCKDNS_MAX_INFLIGHT": "100"})
    assert config.forward_zones == (ForwardZone("corp.test", HostPort("10.0.0.1", 53)),
                                    ForwardZone("dev.test", HostPort("10.0.0.2", 5353)))
    assert config.cache_size == 500 and config.upstream_timeout == 0.5
    assert config.serve_stale is False and config.max_inflight == 100
    defaults = Config()
    assert (defaults.cache_size, defaults.max_inflight, defaults.upstream_timeout,
            defaults.serve_stale) == (10_000, 4096, 1.0, True)
    with pytest.raises(ConfigError, match="cache_min_ttl"):
        config_module.build({"cache_min_ttl": "600", "cache_max_ttl": "60"}, environ={})
    with pytest.raises(ConfigError, match="upstream_timeout"):
        config_module.build({"upstream_timeout": "0"}, environ={})
    with pytest.raises(ConfigError, match="forward_zones"):
        config_module.build({"forward_zones": ["nonsense"]}, environ={})
