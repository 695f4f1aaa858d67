"""From the engine's inspect data to registry entries. Pure: dictionaries in, model objects out.

What Docker's embedded DNS answers for a running container, per network it is attached to: the
container name and the endpoint's aliases (``--network-alias``; on user-defined networks Docker
also puts the 12-character short ID and the hostname there, and both are added here in any case),
with the endpoint's IPv4 and IPv6 addresses, and a PTR for each address pointing at
``<name>.<network>`` exactly as Docker writes it (case kept). dockdns adds the names of the
``dockdns.alias`` label, hides containers labelled ``dockdns.ignore``, leaves containers whose
health check says unhealthy/starting out of name answers, and offers SRV for exposed ports.

Beyond Docker: ``dockdns.wildcard`` (every name below the container's names), ``dockdns.ttl``,
``dockdns.srv`` (named SRV services), the container's ``--add-host`` names (for it alone), the
names other tools' conventions give (discovery/docker/conventions.py), and what a proxy or a
legacy link needs from other containers (``ContainerEntries``, joined in ``cross_records``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from discovery.docker import conventions
from discovery.docker.labels import names_from, srv_from, ttl_from
from discovery.registry.model import Client, IPNetwork, Network, Record

log = logging.getLogger("dockdns.docker")

LABEL_ALIAS = "dockdns.alias"
LABEL_IGNORE = "dockdns.ignore"
LABEL_WILDCARD = "dockdns.wildcard"
LABEL_TTL = "dockdns.ttl"
LABEL_SRV = "dockdns.srv"
# Networks that carry no container address of their own: no names there, as with Docker.
NO_NAME_DRIVERS = frozenset({"host", "null"})
# How Docker marks its default "bridge" network, whose members it gives no names.
DEFAULT_BRIDGE_OPTION = "com.docker.network.bridge.default_bridge"
# Health states in which a container is left out of name answers (unless include_unhealthy).
NOT_READY_HEALTH = frozenset({"starting", "unhealthy"})
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})

Inspect = Mapping[str, Any]


# (network, IPv4 addresses, IPv6 addresses) of one endpoint.
Endpoint = tuple[str, tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class ContainerEntries:
    """What one container contributes: its records and its client addresses, and what records
    of other containers need from it (``cross_records``)."""

    records: tuple[Record, ...] = ()
    clients: tuple[Client, ...] = ()
    name: str = ""
    hostname: str = ""
    short_id: str = ""
    endpoints: tuple[Endpoint, ...] = ()
    ttl: int | None = None
    proxy: str = ""  # conventions.PROXY_*: this container is a proxy of that kind
    # (the proxy kind that serves them, names) from VIRTUAL_HOST and Traefik rules.
    proxied: tuple[tuple[str, tuple[str, ...]], ...] = ()
    links: tuple[tuple[str, str], ...] = ()  # legacy --link (target name, alias)
    origin: str = ""


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
    gateways: list[str] = []
    for config in (data.get("IPAM") or {}).get("Config") or ():
        with contextlib.suppress(KeyError, TypeError, ValueError):
            gateways.append(str(ipaddress.ip_address(config["Gateway"])))
    if not gateways:
        # Docker's default bridge lists no gateway in IPAM: it is docker0's address, the
        # subnet's first host unless the daemon was given another --bip.
        gateways = [str(next(subnet.hosts())) for subnet in subnets if subnet.num_addresses > 2]
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
        gateways=tuple(gateways),
    )


def health_status(data: Inspect) -> str:
    """"healthy", "unhealthy", "starting", or "" for a container without a health check."""
    health = (data.get("State") or {}).get("Health") or {}
    return str(health.get("Status") or "")


def answerable(data: Inspect, include_unhealthy: bool) -> bool:
    return include_unhealthy or health_status(data) not in NOT_READY_HEALTH


def _labels(data: Inspect) -> Mapping[str, str]:
    labels = (data.get("Config") or {}).get("Labels") or {}
    return labels if isinstance(labels, Mapping) else {}


def ignored(data: Inspect, compat: tuple[str, ...] = conventions.COMPAT_ALL) -> bool:
    labels = _labels(data)
    return (str(labels.get(LABEL_IGNORE, "")).strip().lower() in TRUE_WORDS
            or conventions.dnsdock_ignored(labels, compat))


def label_aliases(data: Inspect, container: str = "") -> list[str]:
    labels = _labels(data)
    if LABEL_ALIAS not in labels:
        return []
    return names_from(container or str(data.get("Name") or "").lstrip("/"), LABEL_ALIAS,
                      str(labels[LABEL_ALIAS]))


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
        if (name and len(name) <= 253 and name.isascii()
                and all(0 < len(label) <= 63 for label in name.split("."))):
            names[name] = None
    return tuple(names)


def _host_gateway(networks: Mapping[str, Network]) -> tuple[str, ...]:
    """What Docker writes for ``host-gateway``: its default bridge's gateway (IPv4)."""
    for network in networks.values():
        if network.default_bridge:
            return tuple(a for a in network.gateways if ":" not in a)[:1]
    return ()


def container_entries(data: Inspect, networks: Mapping[str, Network], include_unhealthy: bool,
                      origin: str, compat: tuple[str, ...] = conventions.COMPAT_ALL,
                      domains: tuple[str, ...] = ()) -> ContainerEntries:
    """Records and client addresses for one container (inspect data); nothing unless running.
    Each name is also given under each of ``domains`` (Podman's ``NAME.dns.podman``)."""
    state = data.get("State") or {}
    if not state.get("Running") or state.get("Restarting"):
        return ContainerEntries()
    name = str(data.get("Name") or "").lstrip("/")
    container_id = str(data.get("Id") or "")
    config = data.get("Config") or {}
    host_config = data.get("HostConfig") or {}
    labels = _labels(data)
    image = str(config.get("Image") or "")
    endpoints: Mapping[str, Any] = (data.get("NetworkSettings") or {}).get("Networks") or {}
    hidden = ignored(data, compat)
    named = not hidden and answerable(data, include_unhealthy)
    ports = exposed_ports(data)
    ttl = ttl_from(name, LABEL_TTL, str(labels[LABEL_TTL])) if LABEL_TTL in labels else None
    services = srv_from(name, LABEL_SRV, str(labels[LABEL_SRV])) if LABEL_SRV in labels else ()
    extra = [container_id[:12], str(config.get("Hostname") or ""), *label_aliases(data, name),
             *conventions.dnsdock_names(labels, name, image, compat),
             *conventions.compose_name(labels, name), *conventions.domain_name(config, name)]
    wildcard = conventions.truthy(labels.get(LABEL_WILDCARD))
    described = f"{origin} container {name} ({container_id[:12]})"
    records: list[Record] = []
    attached: list[str] = []
    addresses: list[str] = []
    found_endpoints: list[Endpoint] = []
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
        found_endpoints.append((network_name, ipv4, ipv6))
        if hidden:
            continue
        names = _dns_names([name, *(endpoint.get("Aliases") or ()), *extra]) if named else ()
        if domains:
            names += tuple(f"{n}.{domain}" for domain in domains for n in names
                           if len(n) + len(domain) < 253)
        if wildcard:
            names += tuple(f"*.{n}" for n in names if not n.startswith("*.")
                           and f"*.{n}" not in names and len(n) <= 251)
        records.append(Record(
            names=names, ipv4=ipv4, ipv6=ipv6, network=network_name,
            # Docker's PTR target: the container name (case kept) dot the network name.
            ptr=f"{name}.{network_name}",
            srv=ports if named else (),
            origin=described,
            source="docker",
            ttl=ttl,
            srv_names=services if named else (),
        ))
    # Names Docker writes into this container's /etc/hosts (--add-host): for it alone.
    if addresses and not hidden:
        hosts: dict[str, tuple[list[str], list[str]]] = {}
        for host, address in conventions.extra_hosts(host_config, name,
                                                     _host_gateway(networks)):
            v4, v6 = hosts.setdefault(host, ([], []))
            (v6 if ":" in address else v4).append(address)
        records.extend(Record(names=(host,), ipv4=tuple(v4), ipv6=tuple(v6),
                              clients=tuple(addresses), origin=f"{described} --add-host",
                              source="docker", ttl=ttl)
                       for host, (v4, v6) in hosts.items())
    # A container's addresses make it a client that sees only its own networks, whether or not
    # its names are hidden.
    clients = tuple(Client(address, tuple(attached), name) for address in addresses)
    return ContainerEntries(
        tuple(records), clients, name=name, hostname=str(config.get("Hostname") or ""),
        short_id=container_id[:12], endpoints=tuple(found_endpoints), ttl=ttl,
        proxy=conventions.proxy_kind(labels, image, compat),
        proxied=conventions.proxied_names(labels, config, name, compat) if named else (),
        links=tuple(conventions.links(host_config, name)), origin=described)


def cross_records(entries: list[ContainerEntries],
                  networks: Mapping[str, Network]) -> tuple[Record, ...]:
    """Records that join two containers: names a proxy serves for its backends (answered with
    the proxy's addresses, on the proxy's networks) and legacy links on the default bridge (for
    the linking container alone, as in its /etc/hosts)."""
    records: list[Record] = []
    proxies = [e for e in entries if e.proxy]
    if proxies and any(e.proxied for e in entries):
        labelled = [p for p in proxies if p.proxy == conventions.PROXY_LABELLED]
        for backend in entries:
            for kind, names in backend.proxied:
                serving = labelled or [p for p in proxies if p.proxy == kind]
                for proxy in serving:
                    records.extend(Record(
                        names=names, ipv4=ipv4, ipv6=ipv6, network=network,
                        origin=f"{backend.origin} {kind} name, served by proxy {proxy.name}",
                        source="docker", ttl=backend.ttl)
                        for network, ipv4, ipv6 in proxy.endpoints)
    if any(e.links for e in entries):
        bridges = {n.name for n in networks.values() if n.default_bridge}
        by_name = {e.name: e for e in entries if e.name}
        for client in entries:
            own = tuple(a for network, v4, v6 in client.endpoints if network in bridges
                        for a in v4 + v6)
            for target_name, alias in client.links:
                target = by_name.get(target_name)
                if target is None or not own:
                    continue
                for network, ipv4, ipv6 in target.endpoints:
                    if network in bridges:
                        names = _dns_names([alias, target.hostname, target.name])
                        records.append(Record(
                            names=names, ipv4=ipv4, ipv6=ipv6, network=network, clients=own,
                            origin=f"{client.origin} --link {target.name}:{alias}",
                            source="docker", ttl=target.ttl))
    return tuple(records)
