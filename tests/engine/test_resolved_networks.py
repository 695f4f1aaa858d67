"""dockdns registered with a real systemd-resolved (tests/support/resolved.py) routes the reverse
zones of Docker's subnets as well as ``~docker``, and follows networks as they come and go.

dockdns runs in resolved's namespace and reads the shared engine through its socket (a path
socket works across network namespaces); host programs there ask resolved's stub.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from resolver.resolved.zones import reverse_zones
from tests.support.engine import Lab, lab, wait_for
from tests.support.resolved import ResolvedNamespace, resolved_namespace

pytestmark = pytest.mark.docker

PREFIX = "host-rsd-"
LISTEN = "127.0.0.1:5390"


@pytest.fixture
def made() -> Iterator[Lab]:
    with lab(PREFIX, pool="10.247.0.0/16") as created:
        yield created


def zone_of(subnet: str) -> str:
    (zone,) = reverse_zones(ipaddress.ip_network(subnet))
    return zone


def domains(ns: ResolvedNamespace) -> str:
    return ns.run(ns.resolvectl, "domain", "dockdns0").stdout


def test_reverse_zones_of_docker_networks_are_routed_and_follow_changes(made: Lab) -> None:
    first = made.network(f"{PREFIX}a")
    web = made.container(f"{PREFIX}web", first.name)
    with resolved_namespace() as ns:
        socket = ns.docker_socket
        assert socket is not None, "the engine's socket is not reachable in the namespace"
        log = ns.dir / "dockdns.log"
        ns.dockdns(LISTEN, "--docker-host", f"unix://{socket}", "--domain", "docker",
                   "--no-swarm", log=log)
        wait_for(lambda: f"~{zone_of(first.subnet)}" in domains(ns), message="first zone")
        assert "~docker" in domains(ns)
        address = web.ip(first.name)
        # Host programs resolve container names and addresses through the stub.
        query = ns.run(ns.resolvectl, "query", f"{PREFIX}web.docker")
        assert address in query.stdout, query.stdout + query.stderr
        ptr = ns.run("dig", "+short", "+time=5", "@127.0.0.53", "-x", address).stdout.split()
        assert ptr == [f"{PREFIX}web.{first.name}."]
        # An address of the subnet that no container holds: NXDOMAIN from dockdns, not asked
        # of anyone else.
        unused = str(ipaddress.ip_network(first.subnet).broadcast_address - 1)
        reply = ns.run("dig", "+time=5", "@127.0.0.53", "-x", unused).stdout
        assert "status: NXDOMAIN" in reply, reply

        second = made.network(f"{PREFIX}b")
        wait_for(lambda: f"~{zone_of(second.subnet)}" in domains(ns), message="new zone")
        made.cleanup()  # both networks gone
        wait_for(lambda: zone_of(first.subnet) not in domains(ns)
                 and zone_of(second.subnet) not in domains(ns), message="zones removed")
        assert "~docker" in domains(ns)
        assert "systemd-resolved: routing domains now" in log.read_text()
