"""The benchmark's reference servers (benchmarks/reference.py) as real processes on loopback:
Knot and NSD serve a zone file with a wildcard, Unbound serves local-data and forwards the rest
(under .test, one of its default local zones) to Knot, and every answer is checked over UDP."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dnslib
import pytest

from benchmarks import reference, servers

ZONE = "ref.test"
RECORDS = [("host0", "10.0.0.1"), ("host1", "10.0.0.2"), ("*.miss", "198.51.100.9")]


@pytest.fixture
def zone(tmp_path: Path) -> Iterator[Path]:
    tmp_path.chmod(0o755)  # NSD and Knot may read it as another user
    yield reference.write_zone(tmp_path / f"{ZONE}.zone", ZONE, RECORDS)


def need(program: str) -> None:
    if not reference.installed(program):
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"{program} is not installed (tests/setup.sh installs it)")
        pytest.skip(f"{program} is not installed")


def answers(port: int, name: str) -> tuple[int, list[str]]:
    reply = servers.query("127.0.0.1", port, name, timeout=2.0)
    assert reply is not None, name
    return reply.header.rcode, sorted(str(rr.rdata) for rr in reply.rr)


def check_zone(port: int) -> None:
    assert answers(port, f"host0.{ZONE}") == (0, ["10.0.0.1"])
    assert answers(port, f"HOST1.{ZONE}") == (0, ["10.0.0.2"])
    assert answers(port, f"anything-7.miss.{ZONE}") == (0, ["198.51.100.9"])
    assert answers(port, f"nothing.{ZONE}") == (dnslib.RCODE.NXDOMAIN, [])


@pytest.mark.parametrize("kind", ["knot", "nsd"])
def test_an_authoritative_server_from_a_zone_file(kind: str, zone: Path, tmp_path: Path) -> None:
    need(reference.KNOTD if kind == "knot" else reference.NSD)
    start = reference.knot if kind == "knot" else reference.nsd
    port = servers.free_port()
    with start(kind, "127.0.0.1", port, {ZONE: zone}, f"host0.{ZONE}", tmp_path) as server:
        check_zone(port)
        assert server.pids and server.cpu_seconds() >= 0
    assert servers.query("127.0.0.1", port, f"host0.{ZONE}", timeout=0.3) is None  # stopped


def test_authoritative_prefers_knot(zone: Path, tmp_path: Path) -> None:
    need(reference.KNOTD)
    port = servers.free_port()
    with reference.authoritative("upstream", "127.0.0.1", port, {ZONE: zone}, f"host0.{ZONE}",
                                 tmp_path) as server:
        assert server.name == "knot"
        check_zone(port)


def test_unbound_local_data_and_forwarding(zone: Path, tmp_path: Path) -> None:
    need(reference.KNOTD)
    need(reference.UNBOUND)
    knot_port, port = servers.free_port(), servers.free_port()
    local = reference.local_data([("web.local.test", "10.9.9.9")])
    with reference.knot("knot", "127.0.0.1", knot_port, {ZONE: zone}, f"host0.{ZONE}",
                        tmp_path), \
            reference.unbound("unbound", "127.0.0.1", port, ("127.0.0.1", knot_port),
                              ['local-zone: "local.test." static', *local], "web.local.test",
                              tmp_path) as unbound:
        assert len(unbound.pids) == 1
        assert answers(port, "web.local.test") == (0, ["10.9.9.9"])
        assert answers(port, "other.local.test") == (dnslib.RCODE.NXDOMAIN, [])
        # Under .test but not local: forwarded to Knot, not answered by the default zone.
        assert answers(port, f"x1.miss.{ZONE}") == (0, ["198.51.100.9"])
        assert answers(port, f"host1.{ZONE}") == (0, ["10.0.0.2"])


def test_zone_owners_are_relative() -> None:
    assert reference.relative("host1.bench.test", "bench.test") == "host1"
    with pytest.raises(ValueError):
        reference.relative("host1.other.test", "bench.test")
