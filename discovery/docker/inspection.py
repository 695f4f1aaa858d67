"""From the engine's inspect data to registry entries. Pure: dictionaries in, model objects out.

What Docker's embedded DNS answers for a running container, per network it is attached to: the
container name and the endpoint's aliases (``--network-alias``; on user-defined networks Docker
also puts the 12-character short ID and the hostname there, and both are added here in any case),
with the endpoint's IPv4 and IPv6 addresses, and a PTR for each address pointing at
``<name>.<network>`` exactly as Docker writes it (case kept). dockdns adds the names of the
``dockdns.alias`` label, hides containers labelled ``dockdns.ignore``, leaves containers whose
health check says unhealthy/starting out of name answers, and offers SRV for exposed ports.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from discovery.registry.model import Client, IPNetwork, Network, Record

log = logging.getLogger("dockdns.docker")

LABEL_ALIAS = "dockdns.alias"
LABEL_IGNORE = "dockdns.ignore"
# Networks that carry no container address of their own: no names there, as with Docker.
NO_NAME_DRIVERS = frozenset({"host", "null"})
# How Docker marks its default "bridge" network, whose members it gives no names.
DEFAULT_BRIDGE_OPTION = "com.docker.network.bridge.default_bridge"
# Health states in which a container is left out of name answers (unless include_unhealthy).
NOT_READY_HEALTH = frozenset({"starting", "unhealthy"})
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})

Inspect = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ContainerEntries:
    """What one container contributes: its records and its client addresses."""

    records: tuple[Record, ...] = ()
    clients: tuple[Client, ...] = ()


def network_from_inspect(data: Inspect, source: str) -> Network | None:
    """A ``Network`` from network inspect (or list) data; None for host/none."""
    driver = str(data.get("Driver") or "")
    if driver in NO_NAME_DRIVERS:
        return None
    subnets: list[IPNetwork] = []
    for config in (data.get("IPAM") or {}).get("Config") or ():
        with contextlib.suppress(KeyError, TypeError, ValueError):
            subnets.append(ipaddress.ip_network(config["Subnet"], strict=False))
    options = data.get("Options") or {}
    return Network(
        name=str(data["Name"]),
        id=str(data.get("Id") or ""),
        driver=driver,
        scope=str(data.get("Scope") or "local"),
        subnets=tuple(subnets),
        internal=bool(data.get("Internal")),
        default_bridge=str(options.get(DEFAULT_BRIDGE_OPTION, "")).lower() == "true"
        # Podman's default network ("podman", called "bridge" by its Docker-compatible API, with
        # no options): its resolver gives its members no names either. Docker keeps the name
        # "bridge" for its own default network, so no user network is called that.
        or (data.get("Name") == "bridge" and driver == "bridge" and not options),
        source=source,
    )


def health_status(data: Inspect) -> str:
    """"healthy", "unhealthy", "starting", or "" for a container without a health check."""
    health = (data.get("State") or {}).get("Health") or {}
    return str(health.get("Status") or "")


def answerable(data: Inspect, include_unhealthy: bool) -> bool:
    return include_unhealthy or health_status(data) not in NOT_READY_HEALTH


def ignored(data: Inspect) -> bool:
    labels = (data.get("Config") or {}).get("Labels") or {}
    return str(labels.get(LABEL_IGNORE, "")).strip().lower() in TRUE_WORDS


def label_aliases(data: Inspect) -> list[str]:
    labels = (data.get("Config") or {}).get("Labels") or {}
    return [part for part in str(labels.get(LABEL_ALIAS, "")).split(",") if part.strip()]


def exposed_ports(data: Inspect) -> tuple[tuple[str, int], ...]:
    """``Config.ExposedPorts`` ({"80/tcp": {}}) as (protocol, port) pairs, sorted."""
    ports: set[tuple[str, int]] = set()
    for key in (data.get("Config") or {}).get("ExposedPorts") or {}:
        number, _, proto = str(key).partition("/")
        if number.isdigit() and 0 < int(number) < 65536 and proto in ("tcp", "udp", ""):
            ports.add((proto or "tcp", int(number)))
    return tuple(sorted(ports))


def _dns_names(candidates: list[str]) -> tuple[str, ...]:
    """Lower case, no trailing dot, no empties, no duplicates, first occurrence first."""
    names: dict[str, None] = {}
    for candidate in candidates:
        name = candidate.strip().rstrip(".").lower()
        if name and len(name) <= 253 and all(0 < len(label) <= 63 for label in name.split(".")):
            names[name] = None
    return tuple(names)


def container_entries(data: Inspect, networks: Mapping[str, Network], include_unhealthy: bool,
                      origin: str, domains: tuple[str, ...] = ()) -> ContainerEntries:
    """Records and client addresses for one container (inspect data); nothing unless running.
    Each name is also given under each of ``domains`` (Podman's ``NAME.dns.podman``)."""
    state = data.get("State") or {}
    if not state.get("Running") or state.get("Restarting"):
        return ContainerEntries()
    name = str(data.get("Name") or "").lstrip("/")
    container_id = str(data.get("Id") or "")
    config = data.get("Config") or {}
    endpoints: Mapping[str, Any] = (data.get("NetworkSettings") or {}).get("Networks") or {}
    hidden = ignored(data)
    named = not hidden and answerable(data, include_unhealthy)
    ports = exposed_ports(data)
    extra = [container_id[:12], str(config.get("Hostname") or ""), *label_aliases(data)]
    records: list[Record] = []
    attached: list[str] = []
    addresses: list[str] = []
    for network_name, endpoint in endpoints.items():
        endpoint = endpoint or {}
        ipv4 = tuple(a for a in (endpoint.get("IPAddress"),) if a)
        ipv6 = tuple(a for a in (endpoint.get("GlobalIPv6Address"),) if a)
        network = networks.get(network_name)
        if not (ipv4 or ipv6) or (network is not None and network.driver in NO_NAME_DRIVERS):
            continue
        if network is not None:
            network_name = network.name  # the listing's name (Podman's endpoint may differ)
        attached.append(network_name)
        addresses.extend(ipv4 + ipv6)
        if hidden:
            continue
        names = _dns_names([name, *(endpoint.get("Aliases") or ()), *extra]) if named else ()
        if domains:
            names += tuple(f"{n}.{domain}" for domain in domains for n in names
                           if len(n) + len(domain) < 253)
        records.append(Record(
            names=names, ipv4=ipv4, ipv6=ipv6, network=network_name,
            # Docker's PTR target: the container name (case kept) dot the network name.
            ptr=f"{name}.{network_name}",
            srv=ports if named else (),
            origin=f"{origin} container {name} ({container_id[:12]})",
            source="docker",
        ))
    # A container's addresses make it a client that sees only its own networks, whether or not
    # its names are hidden.
    clients = tuple(Client(address, tuple(attached), name) for address in addresses)
    return ContainerEntries(tuple(records), clients)
