"""Swarm on the test engine: a single-node manager, overlay networks and services of the lab.

* ``require_swarm()``: the shared engine as a Swarm manager (``docker swarm init --advertise-addr
  127.0.0.1`` when it is in no Swarm yet). The Swarm is left active: other test runs share it.
* ``SwarmLab``: services a test creates on top of a ``Lab`` (same prefix, same owner label), so
  that cleanup removes exactly those services, waits for their tasks to stop, then lets the lab
  remove its networks and containers.
* Services run the local test image referenced by its ID (``sha256:...``): with a tag, a Swarm
  agent tries the registry before using the local image (docker's ``--no-resolve-image`` only stops
  the CLI from asking); with an image ID it never does.
* ``SwarmLab.ask_docker``: questions to Docker's embedded DNS from a container, refused for any
  name Docker does not answer itself (it would forward it off this machine).
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.message
import dns.name
import dns.reversename
import docker
import docker.errors
import docker.types
import pytest

from tests.support.daemon import RunningDaemon
from tests.support.engine import (
    IMAGE,
    IN_CI,
    OWNER,
    OWNER_LABEL,
    Box,
    Lab,
    Net,
    Question,
    _owner_alive,
    lab,
    wait_for,
)
from tests.support.net import addresses, ask

# For a change in the Swarm to reach a dockdns on a busy 2-core machine.
CHANGE_SECONDS = 90.0
# Tasks of a fresh service take a while to be scheduled and started on a busy 2-core machine.
TASK_START_SECONDS = 180.0
GWBRIDGE = "docker_gwbridge"
# sleep as PID 1 ignores SIGTERM; a short grace period keeps service removal quick.
STOP_GRACE_NS = 1_000_000_000


def require_swarm(client: docker.DockerClient) -> None:
    """Make the engine a single-node Swarm manager unless it already is one."""
    swarm = client.info().get("Swarm") or {}
    if swarm.get("ControlAvailable"):
        return
    if swarm.get("LocalNodeState") == "inactive":
        try:
            client.swarm.init(advertise_addr="127.0.0.1")
        except docker.errors.APIError as err:
            if "already part of a swarm" not in str(err):  # another test run was faster
                raise
        swarm = client.info().get("Swarm") or {}
        if swarm.get("ControlAvailable"):
            return
    message = f"the engine is in a Swarm but not a manager (state {swarm.get('LocalNodeState')})"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def gwbridge_gateway(client: docker.DockerClient) -> str:
    """The host's address on docker_gwbridge (made with the first overlay container)."""
    data = client.api.inspect_network(GWBRIDGE)
    for config in (data.get("IPAM") or {}).get("Config") or ():
        if config.get("Gateway"):
            return str(config["Gateway"])
        subnet = ipaddress.ip_network(config["Subnet"])
        return str(next(subnet.hosts()))
    raise RuntimeError("docker_gwbridge has no IPv4 subnet")


@dataclass
class Service:
    name: str
    id: str


@dataclass
class SwarmLab:
    lab: Lab
    services: dict[str, Service] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        require_swarm(self.client)
        self.image_id = self.client.images.get(IMAGE).id
        self._sweep_stale()

    @property
    def client(self) -> docker.DockerClient:
        return self.lab.client

    def _sweep_stale(self) -> None:
        for service in self.client.api.services(filters={"label": OWNER_LABEL}):
            spec = service.get("Spec") or {}
            owner = (spec.get("Labels") or {}).get(OWNER_LABEL, "")
            if spec.get("Name", "").startswith(self.lab.prefix) and not _owner_alive(owner):
                with contextlib.suppress(docker.errors.APIError):
                    self.client.api.remove_service(service["ID"])

    def overlay(self, name: str) -> Net:
        """An attachable overlay. The same name removed by the test before can still exist for a
        moment (a Swarm network goes once the manager has released it), and a create then
        fails with 409 "already exists": it is asked again until that one is gone."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return self.lab.network(name, driver="overlay", attachable=True)
            except docker.errors.APIError as err:
                if "already exists" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def attach(self, name: str, network: str) -> Box:
        """A plain container on an attachable overlay. The manager allocates its address; on a
        busy machine that can time out ("attaching to network failed ... context deadline
        exceeded"), or find the overlay just created not yet known to the node ("network NAME
        not found"), and a new start then succeeds."""
        box = self.lab.container(name, network, start=False)
        for attempt in range(3):
            try:
                self.client.api.start(box.id)
                return box
            except docker.errors.APIError as err:
                passing = ("attaching to network failed" in str(err)
                           or f"network {network} not found" in str(err))
                if not passing or attempt == 2:
                    raise
                time.sleep(2)
        return box

    def service(self, name: str, networks: Sequence[str], *, replicas: int = 1,
                dnsrr: bool = False, aliases: Mapping[str, Sequence[str]] | None = None,
                healthcheck: Mapping[str, Any] | None = None,
                command: Sequence[str] = ("sleep", "3600"), global_mode: bool = False,
                image: str | None = None) -> Service:
        """Create a service of the test image (or of ``image``, a local image's ID) on
        ``networks``: replicated, or global (one task per node) with ``global_mode``."""
        self.lab._named(name)
        aliases = aliases or {}
        for names in aliases.values():
            for alias in names:
                self.lab._named(alias)
        container = docker.types.ContainerSpec(
            image or self.image_id, command=list(command), stop_grace_period=STOP_GRACE_NS,
            healthcheck=docker.types.Healthcheck(**healthcheck) if healthcheck else None)
        attachments = [docker.types.NetworkAttachmentConfig(
            self.lab.networks[n].id, aliases=list(aliases.get(n, ())) or None) for n in networks]
        created = self.client.api.create_service(
            docker.types.TaskTemplate(container, networks=attachments), name=name,
            labels={OWNER_LABEL: OWNER},
            mode=docker.types.ServiceMode("global") if global_mode
            else docker.types.ServiceMode("replicated", replicas=replicas),
            endpoint_spec=docker.types.EndpointSpec(mode="dnsrr" if dnsrr else "vip"))
        service = Service(name, created["ID"])
        self.services[name] = service
        return service

    def scale(self, name: str, replicas: int) -> None:
        """Change only the replica count, as ``docker service scale`` does. (An update through
        the SDK re-sends the spec with defaults filled in, which Swarm sees as a new task
        template: it replaces every task.)"""
        subprocess.run(["docker", "service", "scale", "--detach", f"{name}={replicas}"],
                       check=True, capture_output=True, timeout=60)

    def remove(self, name: str) -> None:
        service = self.services.pop(name)
        self.client.api.remove_service(service.id)
        self.removed.append(service.id)  # cleanup still waits for its tasks to stop

    def inspect(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = self.client.api.inspect_service(self.services[name].id)
        return data

    def running_tasks(self, name: str) -> list[dict[str, Any]]:
        tasks = self.client.api.tasks(filters={"service": self.services[name].id,
                                               "desired-state": "running"})
        return [t for t in tasks if (t.get("Status") or {}).get("State") == "running"]

    def tasks(self, name: str) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = self.client.api.tasks(
            filters={"service": self.services[name].id, "desired-state": "running"})
        return tasks

    def wait_running(self, name: str, count: int) -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            tasks = self.running_tasks(name)
            return tasks if len(tasks) == count else None
        tasks: list[dict[str, Any]] = wait_for(ready, timeout=TASK_START_SECONDS, interval=0.5,
                                                message=f"{count} running tasks of {name}")
        return tasks

    def task_ips(self, name: str, network: str) -> set[str]:
        """The addresses of the running tasks of ``name`` on ``network``, read from the engine."""
        ips: set[str] = set()
        for task in self.running_tasks(name):
            for attachment in task.get("NetworksAttachments") or ():
                if attachment["Network"]["Spec"]["Name"] == network:
                    ips.update(str(ipaddress.ip_interface(a).ip) for a in attachment["Addresses"])
        return ips

    def vip(self, name: str, network: str) -> str:
        for vip in self.inspect(name)["Endpoint"].get("VirtualIPs") or ():
            if vip["NetworkID"] == self.lab.networks[network].id:
                return str(ipaddress.ip_interface(vip["Addr"]).ip)
        raise LookupError(f"{name} has no VIP on {network}")

    def task_container(self, task: Mapping[str, Any]) -> dict[str, Any]:
        container_id = task["Status"]["ContainerStatus"]["ContainerID"]
        data: dict[str, Any] = self.client.api.inspect_container(container_id)
        return data

    def cleanup(self) -> None:
        """Remove the lab's services and wait until their tasks are gone (their endpoints keep
        the overlay networks in use until then)."""
        ids = [s.id for s in self.services.values()]
        for service_id in ids:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_service(service_id)
        self.services.clear()
        ids += self.removed
        deadline = time.monotonic() + 60
        while ids and time.monotonic() < deadline:
            left = [c for c in self.client.api.containers(
                all=True, filters={"label": "com.docker.swarm.service.id"})
                if c["Labels"].get("com.docker.swarm.service.id") in ids]
            if not left:
                break
            time.sleep(0.5)
        for _ in range(40):
            try:
                self.lab.cleanup()
                return
            except docker.errors.APIError as err:
                if "active endpoints" not in str(err):
                    raise
                time.sleep(0.5)
        self.lab.cleanup()

    # --- what Docker's resolver knows -----------------------------------------------------------

    def _names(self, box: Box) -> tuple[dict[str, set[str]], set[str]]:
        """Names Docker answers itself in ``box``, per network of the box (service names,
        aliases, tasks.<name>, task container names and short IDs of the lab's services with a
        running task there), and the task addresses it has PTR records for."""
        attached = set(box.inspect()["NetworkSettings"]["Networks"]) & set(self.lab.networks)
        names: dict[str, set[str]] = {n.lower(): set() for n in attached}
        addresses: set[str] = set()
        for name in list(self.services):
            spec = self.inspect(name)["Spec"]
            alias_by_network = {
                a["Target"]: [x.lower() for x in a.get("Aliases") or ()]
                for a in spec["TaskTemplate"].get("Networks") or ()}
            for task in self.running_tasks(name):
                container = self.task_container(task)
                for attachment in task.get("NetworksAttachments") or ():
                    network = attachment["Network"]["Spec"]["Name"]
                    if network not in attached:
                        continue
                    known = names[network.lower()]
                    service_names = [name.lower(), *alias_by_network.get(
                        attachment["Network"]["ID"], ())]
                    known.update(service_names)
                    known.update(f"tasks.{n}" for n in service_names)
                    known.add(container["Name"].lstrip("/").lower())
                    known.add(container["Id"][:12])
                    addresses.update(str(ipaddress.ip_interface(a).ip)
                                     for a in attachment["Addresses"])
        return names, addresses

    def knows(self, box: Box, name: str) -> bool:
        """Whether Docker's resolver in ``box`` answers ``name`` without forwarding it."""
        if self.lab.knows(box, name):
            return True
        names, addresses = self._names(box)
        lowered = name.lower().rstrip(".")
        if lowered.endswith((".in-addr.arpa", ".ip6.arpa")):
            return dns.reversename.to_address(dns.name.from_text(lowered)) in addresses
        labels = lowered.split(".")
        for cut in range(len(labels), 0, -1):
            head, tail = ".".join(labels[:cut]), ".".join(labels[cut:])
            if tail and head in names.get(tail, ()):
                return True
            if not tail and any(head in known for known in names.values()):
                return True
        return False

    def ask_docker(self, box: Box, questions: Iterable[Question]) -> list[
            dns.message.Message | None]:
        questions = list(questions)
        for question in questions:
            if not self.knows(box, question.name):
                raise ValueError(f"refusing to ask Docker's resolver for {question.name!r}: it "
                                 "does not know it and would forward it off this machine")
        return self.lab.ask(box, "127.0.0.11", questions)


@contextlib.contextmanager
def overlay_lab(prefix: str, pool: str, network: str) -> Iterator[SwarmLab]:
    """A ``SwarmLab`` on a lab of its own with one attachable overlay ``network``; its services,
    then its networks and containers, removed however the test ends."""
    with lab(prefix, pool=pool) as made:
        cluster = SwarmLab(made)
        try:
            cluster.overlay(network)
            yield cluster
        finally:
            cluster.cleanup()


def answers(server: RunningDaemon, name: str) -> set[str]:
    """The addresses ``server`` answers for ``name`` (A)."""
    return addresses(ask(server.host, server.port, name))


def follows(server: RunningDaemon, swarm: SwarmLab, service: str, count: int,
            network: str) -> set[str]:
    """Wait until the engine runs ``count`` tasks of ``service`` and ``server`` answers exactly
    their addresses on ``network`` for tasks.<service>."""
    swarm.wait_running(service, count)
    expected = swarm.task_ips(service, network)
    assert len(expected) == count
    wait_for(lambda: answers(server, f"tasks.{service}") == expected,
             timeout=CHANGE_SECONDS, interval=0.2,
             message=f"dockdns answering tasks.{service} with {sorted(expected)}")
    return expected
