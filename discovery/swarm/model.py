"""What a Swarm engine reports, turned into registry records the way Swarm's embedded DNS names
things. Pure: API dictionaries in, a ``SourcePart`` out; no I/O.

The names, as libnetwork's ``addServiceBinding`` registers them on each network a service's tasks
are attached to (only while at least one task is bound there):

* ``<service>`` and every network alias of the service: the virtual IP in ``vip`` mode, the
  addresses of all running tasks in ``dnsrr`` mode (and in ``vip`` mode when the network has no
  VIP, as libnetwork falls back to);
* ``tasks.<service>`` and ``tasks.<alias>``: the addresses of all running tasks, in either mode;
* each task's container name (``<service>.<slot>.<task id>``, or ``<service>.<node id>.<task id>``
  for global services) and its short container ID: that task's address, and PTR for the address
  answers ``<container name>.<network>``. A VIP has no PTR.

A task counts once it is running with ``running`` as its desired state: Swarm keeps a task with a
health check in ``starting`` until the check passes (and only then binds it in DNS), and a task
being shut down gets another desired state before its container stops. The ``ingress`` network is
for routing only and gets no names, as in libnetwork.

What the local engine saw of a task's container beats the manager's word for it (``local``: task
ID -> up): Docker's resolver binds a task when its container starts (or, with a health check,
turns healthy) on its node, and unbinds it when the container dies, while the manager learns of
either a few tens of milliseconds later (measured here: 20-110 ms after the start event).

For a local engine, the part also maps the addresses of containers on overlay networks to those
containers' networks: their ``docker_gwbridge`` address (how a query from an overlay container
reaches a dockdns on the host) and their addresses on their own networks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from discovery.registry.model import (
    SCOPE_LOCAL,
    SCOPE_SWARM,
    Client,
    IPNetwork,
    Network,
    Record,
    SourcePart,
)

SOURCE = "swarm"
GWBRIDGE = "docker_gwbridge"
INGRESS = "ingress"
MODE_DNSRR = "dnsrr"
RUNNING = "running"
# A service's UpdateStatus.State while Swarm replaces its tasks.
UPDATING = frozenset({"updating", "rollback_started"})
# Task states a task never leaves (swarmkit's api.TaskState past RUNNING).
TERMINAL = frozenset({"complete", "shutdown", "failed", "rejected", "remove", "orphaned"})

Json = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EngineRead:
    """Everything read from one engine in one refresh (API objects as the engine returned them).

    ``networks``/``services``/``tasks`` come from a manager (empty otherwise); ``gwbridge`` and
    ``containers`` from a local engine (None/empty otherwise).
    """

    networks: Sequence[Json] = ()
    services: Sequence[Json] = ()
    tasks: Sequence[Json] = ()
    gwbridge: Json | None = None
    containers: Sequence[Json] = ()
    local: Mapping[str, bool] = field(default_factory=dict)  # task ID -> its container is up


@dataclass(slots=True)
class _Binding:
    """The running tasks of one service on one network."""

    ipv4: list[str] = field(default_factory=list)
    ipv6: list[str] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``10.0.0.2/24`` or ``10.0.0.2`` -> the address; None for anything else (even empty)."""
    try:
        return ipaddress.ip_interface(text.strip()).ip if text and text.strip() else None
    except ValueError:
        return None


def _subnets(ipam: Json | None) -> tuple[IPNetwork, ...]:
    subnets: list[IPNetwork] = []
    for config in (ipam or {}).get("Config") or ():
        try:
            subnets.append(ipaddress.ip_network(config.get("Subnet", ""), strict=False))
        except ValueError:
            continue
    return tuple(subnets)


def swarm_networks(networks: Iterable[Json]) -> list[Network]:
    """The swarm-scoped networks that carry names (every one but the routing-only ingress)."""
    found: list[Network] = []
    for data in networks:
        if data.get("Scope") != SCOPE_SWARM or data.get("Ingress") or data.get("Name") == INGRESS:
            continue
        found.append(Network(
            name=str(data["Name"]), id=str(data.get("Id", "")),
            driver=str(data.get("Driver") or "overlay"), scope=SCOPE_SWARM,
            subnets=_subnets(data.get("IPAM")), internal=bool(data.get("Internal")),
            source=SOURCE))
    return sorted(found, key=lambda n: n.name)


def task_container_name(service: str, task: Json) -> str:
    """The container Swarm makes for a task: ``svc.<slot>.<id>``, or ``svc.<node>.<id>`` for a
    global service (slot 0), as swarmkit's ``naming.Task``."""
    slot = task.get("Slot") or 0
    return f"{service}.{slot if slot else task.get('NodeID', '')}.{task['ID']}"


def _state(task: Json) -> str:
    return str((task.get("Status") or {}).get("State") or "")


def task_counts(task: Json, local: Mapping[str, bool]) -> bool:
    """Whether ``task`` is answered: desired running, and up by what this node saw of its
    container, or else running by the manager."""
    if task.get("DesiredState") != RUNNING:
        return False
    seen = local.get(str(task.get("ID", "")))
    return seen if seen is not None else _state(task) == RUNNING


def converging(service: Json, tasks: Iterable[Json], local: Mapping[str, bool]) -> bool:
    """Whether the service's tasks are still on their way somewhere: a rolling update, a task
    that should run and does not (yet), a replica count not reached, or this node and the manager
    disagreeing about a task. ``tasks`` are the service's tasks whose desired state is running.
    (A service whose tasks can never start, pending for want of a node, converges forever: the
    source gives up following it after a while; see ``discovery.swarm.source``.)"""
    if ((service.get("UpdateStatus") or {}).get("State") or "") in UPDATING:
        return True
    wanted = [t for t in tasks if t.get("DesiredState") == RUNNING]
    for task in wanted:
        running = _state(task) == RUNNING
        seen = local.get(str(task.get("ID", "")))
        if not running or (seen is not None and seen != running):
            return True
    replicated = ((service.get("Spec") or {}).get("Mode") or {}).get("Replicated")
    if replicated is not None and replicated.get("Replicas") is not None:
        return len(wanted) != int(replicated["Replicas"])
    return False


def _checks(test: Sequence[str]) -> bool:
    return bool(test) and test[0] != "NONE"  # ``NONE`` disables the image's check


def has_healthcheck(container: Json) -> bool:
    """Whether a container (``docker inspect``) has a health check, its image's included (the
    engine merges the image's into the container's config); ``NONE`` disables it."""
    return _checks(((container.get("Config") or {}).get("Healthcheck") or {}).get("Test") or [])


def task_healthcheck(task: Json, image: Json) -> bool:
    """Whether the container Swarm makes for ``task`` has a health check, from the task's spec
    and its image (``docker image inspect``), without asking the container: the engine's create
    takes the spec's test, or the image's when the spec gives none (daemon ``merge``), and the
    Swarm executor then waits for the container to turn healthy before binding it in DNS. (The
    container itself cannot be asked in time: an inspect waits for the start that follows its
    create, a third of a second here, measured.)"""
    spec = ((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Healthcheck") or {}
    test: Sequence[str] = spec.get("Test") or []
    if not test:
        test = ((image.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
    return _checks(test)


def _service_aliases(spec: Json, network_names: Mapping[str, str]) -> dict[str, list[str]]:
    """Network name -> the service's aliases there, from the task template (or the older
    service-level ``Networks``). A target may be a network ID or a name."""
    attachments = (spec.get("TaskTemplate") or {}).get("Networks") or spec.get("Networks") or ()
    aliases: dict[str, list[str]] = {}
    for attachment in attachments:
        target = str(attachment.get("Target", ""))
        network = network_names.get(target, target)
        for alias in attachment.get("Aliases") or ():
            lowered = str(alias).lower()
            if lowered not in aliases.setdefault(network, []):
                aliases[network].append(lowered)
    return aliases


def _vips(service: Json, network_names: Mapping[str, str]) -> dict[str, str]:
    vips: dict[str, str] = {}
    for vip in (service.get("Endpoint") or {}).get("VirtualIPs") or ():
        address = _address(str(vip.get("Addr", "")))
        network = network_names.get(str(vip.get("NetworkID", "")))
        if address is not None and network is not None:
            vips.setdefault(network, str(address))
    return vips


def _endpoint_mode(service: Json) -> str:
    spec_mode = ((service.get("Spec") or {}).get("EndpointSpec") or {}).get("Mode")
    actual = ((service.get("Endpoint") or {}).get("Spec") or {}).get("Mode")
    return str(spec_mode or actual or "vip").lower()


def _task_sort_key(task: Json) -> tuple[int, str]:
    return (int(task.get("Slot") or 0), str(task.get("ID", "")))


def _bindings(service: str, tasks: Iterable[Json],
              network_names: Mapping[str, str]) -> dict[str, _Binding]:
    """Network name -> the running tasks of ``service`` there, with each task's own records."""
    bindings: dict[str, _Binding] = {}
    for task in sorted(tasks, key=_task_sort_key):
        container = task_container_name(service, task)
        container_id = str(((task.get("Status") or {}).get("ContainerStatus") or {})
                           .get("ContainerID") or "")
        for attachment in task.get("NetworksAttachments") or ():
            network_data = attachment.get("Network") or {}
            network = network_names.get(str(network_data.get("ID", "")))
            if network is None:
                continue  # ingress, or a network not (yet) listed
            v4: list[str] = []
            v6: list[str] = []
            for text in attachment.get("Addresses") or ():
                address = _address(str(text))
                if address is not None:
                    (v4 if address.version == 4 else v6).append(str(address))
            if not v4 and not v6:
                continue
            binding = bindings.setdefault(network, _Binding())
            binding.ipv4.extend(v4)
            binding.ipv6.extend(v6)
            names = [container.lower()]
            if container_id:
                names.append(container_id[:12].lower())
            binding.records.append(Record(
                names=tuple(names), ipv4=tuple(v4), ipv6=tuple(v6), network=network,
                ptr=f"{container}.{network}", origin=f"swarm task {container}", source=SOURCE))
    return bindings


def service_records(services: Iterable[Json], tasks: Iterable[Json],
                    network_names: Mapping[str, str],
                    local: Mapping[str, bool] | None = None) -> list[Record]:
    """The records of every service with running tasks, on each network they are bound to.

    ``network_names`` maps network IDs (and names) to the names of networks that carry names;
    ``local`` what this node saw of task containers (task ID -> up).
    """
    local = local or {}
    by_service: dict[str, list[Json]] = {}
    for task in tasks:
        if task_counts(task, local):
            by_service.setdefault(str(task.get("ServiceID", "")), []).append(task)
    records: list[Record] = []
    for service in sorted(services, key=lambda s: str((s.get("Spec") or {}).get("Name", ""))):
        spec = service.get("Spec") or {}
        name = str(spec.get("Name", ""))
        if not name:
            continue
        lowered = name.lower()
        dnsrr = _endpoint_mode(service) == MODE_DNSRR
        vips = _vips(service, network_names)
        aliases = _service_aliases(spec, network_names)
        origin = f"swarm service {name}"
        for network, binding in sorted(_bindings(name, by_service.get(str(service.get("ID")), ()),
                                                 network_names).items()):
            service_names = tuple(dict.fromkeys([lowered, *aliases.get(network, ())]))
            vip = vips.get(network)
            if dnsrr or vip is None:
                records.append(Record(names=service_names, ipv4=tuple(binding.ipv4),
                                      ipv6=tuple(binding.ipv6), network=network, origin=origin,
                                      source=SOURCE))
            else:
                is_v6 = ":" in vip
                records.append(Record(names=service_names, ipv4=() if is_v6 else (vip,),
                                      ipv6=(vip,) if is_v6 else (), network=network,
                                      origin=f"{origin} (VIP)", source=SOURCE))
            records.append(Record(names=tuple(f"tasks.{n}" for n in service_names),
                                  ipv4=tuple(binding.ipv4), ipv6=tuple(binding.ipv6),
                                  network=network, origin=f"{origin} (tasks)", source=SOURCE))
            records.extend(binding.records)
    return records


def gwbridge_network(gwbridge: Json) -> Network:
    """docker_gwbridge: its subnet admits overlay clients, but it gives no names (as the
    default bridge)."""
    return Network(name=str(gwbridge.get("Name") or GWBRIDGE), id=str(gwbridge.get("Id", "")),
                   driver="bridge", scope=SCOPE_LOCAL, subnets=_subnets(gwbridge.get("IPAM")),
                   default_bridge=True, source=SOURCE)


def overlay_clients(gwbridge: Json, containers: Iterable[Json]) -> list[Client]:
    """Map every container attached to docker_gwbridge (i.e. on an overlay) by its gwbridge
    address and its addresses on its own networks to those networks."""
    bridged = gwbridge.get("Containers") or {}
    clients: list[Client] = []
    for container in sorted(containers, key=lambda c: str(c.get("Id", ""))):
        endpoint = bridged.get(container.get("Id"))
        if endpoint is None:
            continue
        names = container.get("Names") or ()
        label = str(names[0]).lstrip("/") if names else str(container.get("Id", ""))[:12]
        attached = ((container.get("NetworkSettings") or {}).get("Networks") or {})
        networks = tuple(sorted(n for n in attached if n not in (GWBRIDGE, INGRESS)))
        if not networks:
            continue
        addresses: list[str] = []
        for key in ("IPv4Address", "IPv6Address"):
            address = _address(str(endpoint.get(key) or ""))
            if address is not None:
                addresses.append(str(address))
        for network in networks:
            settings = attached[network] or {}
            for key in ("IPAddress", "GlobalIPv6Address"):
                address = _address(str(settings.get(key) or ""))
                if address is not None:
                    addresses.append(str(address))
        clients.extend(Client(address, networks, label) for address in dict.fromkeys(addresses))
    return clients


def network_index(networks: Iterable[Network]) -> dict[str, str]:
    """Network ID and name -> name, for the networks that carry names."""
    names: dict[str, str] = {}
    for network in networks:
        names[network.name] = network.name
        if network.id:
            names[network.id] = network.name
    return names


def build_part(read: EngineRead) -> SourcePart:
    """The registry part for one engine's read, all at once (what the source's change by change
    updates must always add up to)."""
    networks = swarm_networks(read.networks)
    records = service_records(read.services, read.tasks, network_index(networks), read.local)
    clients: list[Client] = []
    if read.gwbridge is not None:
        networks.append(gwbridge_network(read.gwbridge))
        clients = overlay_clients(read.gwbridge, read.containers)
    return SourcePart(networks=tuple(networks), records=tuple(records), clients=tuple(clients))
