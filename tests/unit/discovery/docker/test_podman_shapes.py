"""Podman's Docker-compatible API in the shapes seen from Podman 4.3 (tests/engine/test_podman.py
runs the same against a real Podman): what discovery/docker/ makes of them."""

from __future__ import annotations

from typing import Any

from discovery.docker.events import EVENT_FILTERS, DockerEvent
from discovery.docker.inspection import container_entries, network_from_inspect
from discovery.docker.source import (
    PODMAN_DOMAIN,
    DockerSource,
    is_podman,
    podman_networks,
)
from discovery.registry.registry import Registry

PODMAN_DEFAULT = {"Name": "bridge", "Id": "2f25", "Driver": "bridge", "Scope": "local",
                  "IPAM": {"Config": [{"Subnet": "10.88.0.0/16", "Gateway": "10.88.0.1"}]},
                  "Options": {}, "Labels": {}}
USER_NET = {"Name": "pnet", "Id": "30ff", "Driver": "bridge", "Scope": "local",
            "IPAM": {"Config": [{"Subnet": "10.245.7.0/24"}]}, "Options": {}}
CID = "1b8e5d2977ac9f4ba704e2cdce9d4b336d2443d6a3cfdb0ce81a734aed610ed5"


def container(networks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"Id": CID, "Name": "/pa", "State": {"Running": True, "Health": {"Status": ""}},
            "Config": {"Hostname": CID[:12], "Labels": None},
            "NetworkSettings": {"Networks": networks}}


def test_podman_is_told_from_its_version_components() -> None:
    assert is_podman({"Components": [{"Name": "Podman Engine", "Version": "4.3.1"}]})
    assert not is_podman({"Components": [{"Name": "Engine", "Version": "20.10.24"}]})
    assert not is_podman({})


def test_podmans_default_network_is_the_default_bridge_under_both_names() -> None:
    default = network_from_inspect(PODMAN_DEFAULT, "s")
    user = network_from_inspect(USER_NET, "s")
    assert default is not None and default.default_bridge
    assert user is not None and not user.default_bridge
    networks = podman_networks({"bridge": default, "pnet": user})
    entries = container_entries(container({"podman": {"IPAddress": "10.88.0.5"}}), networks,
                                False, "s", (PODMAN_DOMAIN,))
    # Recorded under the listing's name, so the default-bridge rules apply to it.
    assert [r.network for r in entries.records] == ["bridge"]
    assert entries.clients[0].networks == ("bridge",)


def test_names_are_given_under_dns_podman_too() -> None:
    user = network_from_inspect(USER_NET, "s")
    assert user is not None
    endpoint = {"IPAddress": "10.245.7.2", "Aliases": ["pa-alias", CID[:12]],
                "NetworkID": "pnet", "EndpointID": ""}
    (record,) = container_entries(container({"pnet": endpoint}), {"pnet": user}, False, "s",
                                  domains=(PODMAN_DOMAIN,)).records
    assert set(record.names) == {"pa", "pa-alias", CID[:12], "pa.dns.podman",
                                 "pa-alias.dns.podman", f"{CID[:12]}.dns.podman"}
    (plain,) = container_entries(container({"pnet": endpoint}), {"pnet": user}, False,
                                 "s").records
    assert not any(name.endswith(".dns.podman") for name in plain.names)


def test_podman_event_names_are_asked_for_and_understood() -> None:
    assert {"died", "remove", "die", "destroy"} <= set(EVENT_FILTERS["event"])
    removed = DockerEvent.from_message({"Type": "container", "Action": "remove",
                                        "Actor": {"ID": CID, "Attributes": {"name": "pa"}}})
    assert removed is not None and removed.action == "remove"


def test_a_network_event_naming_the_container_marks_it_stale() -> None:
    source = DockerSource(Registry(), "unix:///podman.sock")
    source._containers[CID] = container({})
    # Podman's connect: the actor is the container, no "container" attribute.
    event = DockerEvent.from_message({"Type": "network", "Action": "connect",
                                      "Actor": {"ID": CID, "Attributes": {"name": "pa"}}})
    assert event is not None
    source.on_event(event)
    assert source.take_stale() == ({CID}, True)
