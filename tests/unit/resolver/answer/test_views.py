"""Who may ask: loopback and Docker networks by default, --allow for more, REFUSED for the rest.
Clients are real addresses in a network namespace the test makes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.dns.addresses import is_local_address
from tests.support.daemon import dockdns
from tests.support.net import addresses, ask, free_port
from tests.support.netns import Namespace, namespace


@pytest.fixture(scope="module")
def client() -> Iterator[Namespace]:
    with namespace(subnet_octet=41) as ns:
        yield ns


@pytest.fixture
def hosts(tmp_path: Path) -> str:
    path = tmp_path / "hosts"
    path.write_text("10.1.2.3 web1\n")
    return str(path)


def dig_from(ns: Namespace, server: str, port: int, *args: str) -> str:
    done = ns.run("dig", f"@{server}", "-p", str(port), "+tries=1", "+time=2", *args)
    return done.stdout


def test_strangers_are_refused_loopback_is_not(client: Namespace, hosts: str) -> None:
    loopback_port = free_port()
    with dockdns("--hosts-file", hosts, "--listen", f"127.0.0.1:{loopback_port}",
                 host=client.host_address) as server:
        out = dig_from(client, server.host, server.port, "web1")
        assert "status: REFUSED" in out
        assert "ANSWER: 0" in out
        out = dig_from(client, server.host, server.port, "web1", "+tcp")
        assert "status: REFUSED" in out
        assert addresses(ask("127.0.0.1", loopback_port, "web1")) == {"10.1.2.3"}


def test_allow_admits_a_cidr(client: Namespace, hosts: str) -> None:
    with dockdns("--hosts-file", hosts, "--allow", "10.254.41.0/24",
                 host=client.host_address) as server:
        out = dig_from(client, server.host, server.port, "web1", "+short")
        assert out.split() == ["10.1.2.3"]
        assert addresses(ask(server.host, server.port, "web1", tcp=True)) == {"10.1.2.3"}


def test_the_hosts_own_addresses_are_allowed(client: Namespace, hosts: str) -> None:
    # The host end of the veth pair is this host's; the namespace end is not.
    assert is_local_address(client.host_address)
    assert not is_local_address(client.address)
    with dockdns("--hosts-file", hosts, host=client.host_address) as server:
        assert addresses(ask(server.host, server.port, "web1")) == {"10.1.2.3"}
