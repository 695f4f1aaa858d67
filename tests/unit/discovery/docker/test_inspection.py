"""Docker inspect data -> registry records, clients and networks, as Docker's embedded DNS
answers: container name, endpoint aliases, short ID and hostname on each network with an
address, PTR to ``<name>.<network>`` with case kept, IPv6, no names on host/none, health and the
dockdns.* labels."""

from __future__ import annotations

import ipaddress
from typing import Any

from discovery.docker.inspection import (
    container_entries,
    exposed_ports,
    health_status,
    network_from_inspect,
)
from discovery.registry.model import Client, Network

CID = "0123456789abcdef" * 4
NETWORKS = {"appnet": Network(name="appnet", driver="bridge"),
            "hostnet": Network(name="host", driver="host")}


def inspect(networks: dict[str, Any], *, name: str = "/My_Web", running: bool = True,
            health: str | None = None, labels: dict[str, str] | None = None,
            hostname: str = "webhost", exposed: dict[str, Any] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"Running": running, "Restarting": False}
    if health is not None:
        state["Health"] = {"Status": health}
    return {"Id": CID, "Name": name, "State": state,
            "Config": {"Hostname": hostname, "Labels": labels or {},
                       "ExposedPorts": exposed or {}},
            "NetworkSettings": {"Networks": networks}}


APPNET = {"appnet": {"IPAddress": "172.20.0.5", "GlobalIPv6Address": "fd00:20::5",
                     "Aliases": ["Db", "db.", "x" * 64]}}


def test_names_addresses_and_ptr() -> None:
    entries = container_entries(inspect(APPNET, labels={"dockdns.alias": "extra, ,more"}),
                                NETWORKS, False, "engine")
    (record,) = entries.records
    # Lower case, no trailing dot, de-duplicated, a 64-character label dropped; the short ID,
    # the hostname and the label aliases follow the endpoint's aliases.
    assert record.names == ("my_web", "db", CID[:12], "webhost", "extra", "more")
    assert (record.ipv4, record.ipv6) == (("172.20.0.5",), ("fd00:20::5",))
    assert record.network == "appnet" and record.ptr == "My_Web.appnet"
    assert record.source == "docker" and "My_Web" in record.origin
    assert entries.clients == (Client("172.20.0.5", ("appnet",), "My_Web"),
                               Client("fd00:20::5", ("appnet",), "My_Web"))


def test_a_record_per_network_and_none_without_an_address() -> None:
    data = inspect({"appnet": {"IPAddress": "172.20.0.5"},
                    "other": {"IPAddress": "", "GlobalIPv6Address": "fd00:30::9"},
                    "empty": {"IPAddress": ""},
                    "hostnet": {"IPAddress": "192.0.2.1"}})
    entries = container_entries(data, NETWORKS, False, "engine")
    assert [(r.network, r.ipv4, r.ipv6) for r in entries.records] == [
        ("appnet", ("172.20.0.5",), ()), ("other", (), ("fd00:30::9",))]
    assert {c.networks for c in entries.clients} == {("appnet", "other")}


def test_not_running_or_restarting_gives_nothing() -> None:
    assert container_entries(inspect(APPNET, running=False), NETWORKS, False, "e").records == ()
    restarting = inspect(APPNET)
    restarting["State"]["Restarting"] = True
    assert container_entries(restarting, NETWORKS, False, "e").clients == ()


def test_unhealthy_and_starting_have_no_names_unless_included() -> None:
    for status in ("unhealthy", "starting"):
        data = inspect(APPNET, health=status, exposed={"80/tcp": {}})
        assert health_status(data) == status
        (record,) = container_entries(data, NETWORKS, False, "e").records
        # Still a PTR and a client (its address exists), but no names and no SRV.
        assert record.names == () and record.srv == () and record.ptr == "My_Web.appnet"
        (record,) = container_entries(data, NETWORKS, True, "e").records
        assert "my_web" in record.names and record.srv == (("tcp", 80),)
    (record,) = container_entries(inspect(APPNET, health="healthy"), NETWORKS, False, "e").records
    assert "my_web" in record.names
    assert health_status(inspect(APPNET)) == ""


def test_ignore_label_hides_records_but_keeps_the_client() -> None:
    for word in ("true", " Yes ", "1", "on"):
        entries = container_entries(inspect(APPNET, labels={"dockdns.ignore": word}),
                                    NETWORKS, False, "e")
        assert entries.records == () and len(entries.clients) == 2
    entries = container_entries(inspect(APPNET, labels={"dockdns.ignore": "no"}), NETWORKS,
                                False, "e")
    assert len(entries.records) == 1


def test_exposed_ports() -> None:
    data = inspect({}, exposed={"53/udp": {}, "80/tcp": {}, "8080": {}, "70000/tcp": {},
                                "x/tcp": {}, "22/sctp": {}})
    assert exposed_ports(data) == (("tcp", 80), ("tcp", 8080), ("udp", 53))


def test_network_from_inspect() -> None:
    bridge = network_from_inspect({
        "Name": "bridge", "Id": "abc", "Driver": "bridge", "Scope": "local",
        "IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}, {"Gateway": "no subnet"},
                            {"Subnet": "bogus"}, {"Subnet": "fd00:17::/64"}]},
        "Options": {"com.docker.network.bridge.default_bridge": "true"}}, "docker")
    assert bridge is not None and bridge.default_bridge and bridge.source == "docker"
    assert bridge.subnets == (ipaddress.ip_network("172.17.0.0/16"),
                              ipaddress.ip_network("fd00:17::/64"))
    user = network_from_inspect({"Name": "appnet", "Driver": "bridge", "Internal": True,
                                 "IPAM": None, "Options": None}, "docker")
    assert user is not None and not user.default_bridge and user.internal and user.subnets == ()
    assert user.scope == "local"
    assert network_from_inspect({"Name": "host", "Driver": "host"}, "docker") is None
    assert network_from_inspect({"Name": "none", "Driver": "null"}, "docker") is None
