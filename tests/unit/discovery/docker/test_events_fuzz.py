"""Random Docker event sequences against the Docker source's incremental state: once every event
is delivered and every refresh applied, the registry part equals a fresh listing of the same
engine state, as a new session would make it.

The engine here is an engine *state* (containers, endpoints, networks, address allocation) that
each step mutates the way dockerd does, emitting the events dockerd emits for it (dockerd's
event order, filtered actions included). The real engine is exercised elsewhere
(tests/test_docker_*.py); what is fuzzed here is the source's own bookkeeping: ``on_event``,
``take_stale``, ``fetch``/``apply`` (with the engine moving on between a refresh's read and its
apply, as it does while the read runs in a thread), ``replace`` on a new session, and
``discovery/docker/inspection.py`` on every inspect.

A bigger budget outside CI:
DOCKDNS_FUZZ_EXAMPLES=100000 pytest tests/unit/discovery/docker/test_events_fuzz.py
"""

from __future__ import annotations

import copy
import ipaddress
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import docker.errors
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from discovery.docker.events import DockerEvent
from discovery.docker.source import DockerSource, fetch, list_all
from discovery.registry.model import Client, Network, Record, SourcePart
from discovery.registry.registry import Registry

# The same knob as tests/integration/test_fuzz.py; one state machine example is a whole sequence
# of steps.
EXAMPLES = int(os.environ.get("DOCKDNS_FUZZ_EXAMPLES", "1500"))
MACHINE_EXAMPLES = max(60, EXAMPLES // 10)
STEPS = 60

CONTAINER_NAMES = ("c0", "c1", "c2", "c3", "c4", "c5")
NETWORK_NAMES = ("n0", "n1", "n2", "n3")
ALIASES = ("web", "db", "api")
HEALTH = ("starting", "healthy", "unhealthy")
SOURCE = "docker:unix:///fake.sock"


@dataclass
class Endpoint:
    aliases: tuple[str, ...] = ()
    ip: str = ""
    ip6: str = ""


@dataclass
class FakeNetwork:
    name: str
    id: str
    driver: str
    subnet: str
    subnet6: str = ""
    internal: bool = False
    default_bridge: bool = False


@dataclass
class FakeContainer:
    id: str
    name: str
    hostname: str
    labels: dict[str, str]
    ports: tuple[str, ...]
    health: str  # "" when the container has no health check
    running: bool = False
    paused: bool = False
    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.paused:
            return "paused"
        return "running" if self.running else "exited"


class FakeEngine:
    """The engine state and its event log; answers the three API calls a session makes."""

    def __init__(self) -> None:
        self.serial = 0
        self.nets: dict[str, FakeNetwork] = {}
        self.boxes: dict[str, FakeContainer] = {}
        self.events: list[dict[str, Any]] = []
        self.add_network("bridge", "bridge", default_bridge=True)
        self.add_network("host", "host")
        self.add_network("none", "null")

    # --- the API a session uses (docker.APIClient's names and shapes) ---------------------

    def networks(self) -> list[dict[str, Any]]:
        found = []
        for net in self.nets.values():
            configs = [{"Subnet": s} for s in (net.subnet, net.subnet6) if s]
            options = {"com.docker.network.bridge.default_bridge": "true"} \
                if net.default_bridge else {}
            found.append({"Name": net.name, "Id": net.id, "Driver": net.driver,
                          "Scope": "local", "Internal": net.internal,
                          "IPAM": {"Config": configs}, "Options": options})
        return found

    def containers(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        # Docker's status filter: each value is one State.Status, several values are OR'ed.
        wanted = filters["status"]
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        return [{"Id": c.id} for c in self.boxes.values() if c.status in wanted]

    def inspect_container(self, container: str) -> dict[str, Any]:
        found = self.boxes.get(container)
        if found is None:
            raise docker.errors.NotFound(f"No such container: {container}")
        state: dict[str, Any] = {"Running": found.running, "Paused": found.paused,
                                 "Restarting": False, "Status": found.status}
        if found.health:
            state["Health"] = {"Status": found.health}
        networks = {name: {"IPAddress": e.ip, "GlobalIPv6Address": e.ip6,
                           "Aliases": list(e.aliases) or None}
                    for name, e in found.endpoints.items()}
        # A fresh copy every time: what the source keeps must not change with the engine.
        return copy.deepcopy({
            "Id": found.id, "Name": "/" + found.name, "State": state,
            "Config": {"Hostname": found.hostname, "Labels": dict(found.labels),
                       "ExposedPorts": {port: {} for port in found.ports}},
            "NetworkSettings": {"Networks": networks},
        })

    # --- state changes, each with dockerd's events -------------------------------------------

    def new_id(self) -> str:
        self.serial += 1
        return f"{self.serial:064x}"

    def add_network(self, name: str, driver: str, internal: bool = False,
                    default_bridge: bool = False, ipv6: bool = False) -> FakeNetwork:
        index = len(self.nets) + self.serial
        net = FakeNetwork(name, self.new_id(), driver, f"10.249.{index % 250}.0/24",
                          f"fd00:249:{index:x}::/64" if ipv6 else "", internal, default_bridge)
        self.nets[name] = net
        return net

    def emit(self, kind: str, action: str, actor: str, **attributes: str) -> None:
        self.events.append({"Type": kind, "Action": action,
                            "Actor": {"ID": actor, "Attributes": attributes}})

    def _allocate(self, container: FakeContainer, name: str) -> None:
        net = self.nets[name]
        endpoint = container.endpoints[name]
        if net.driver in ("host", "null"):
            return
        taken = {e.ip for c in self.boxes.values() for n, e in c.endpoints.items()
                 if n == name and e.ip}
        # The lowest free address, as Docker's IPAM hands them out: a stopped container's
        # address goes to the next one started.
        for host in list(ipaddress.ip_network(net.subnet).hosts())[1:]:
            if str(host) not in taken:
                endpoint.ip = str(host)
                break
        if net.subnet6:
            endpoint.ip6 = str(ipaddress.ip_network(net.subnet6)[int(container.id, 16) + 1])

    def _release(self, container: FakeContainer, name: str) -> None:
        endpoint = container.endpoints[name]
        endpoint.ip = endpoint.ip6 = ""

    def connect_event(self, container: FakeContainer, name: str, action: str) -> None:
        net = self.nets[name]
        self.emit("network", action, net.id, container=container.id, name=name,
                  type=net.driver)

    def start(self, container: FakeContainer) -> None:
        if container.running or any(n not in self.nets for n in container.endpoints):
            return  # already running / "network not found": the start fails, no event
        container.running = True
        for name in container.endpoints:
            self._allocate(container, name)
            self.connect_event(container, name, "connect")
        self.emit("container", "start", container.id, name=container.name)

    def die(self, container: FakeContainer, stop: bool) -> None:
        if not container.running:
            return
        container.running = container.paused = False
        self.emit("container", "kill", container.id, name=container.name, signal="15")
        self.emit("container", "die", container.id, name=container.name, exitCode="0")
        for name in container.endpoints:
            self._release(container, name)
            self.connect_event(container, name, "disconnect")
        if stop:
            self.emit("container", "stop", container.id, name=container.name)


def names_of(pool: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.sampled_from(pool)


# What `docker run` / `docker create` is given.
CONTAINER = st.fixed_dictionaries({
    "name": names_of(CONTAINER_NAMES),
    "networks": st.lists(names_of(NETWORK_NAMES + ("bridge", "host")), max_size=3, unique=True),
    "aliases": st.lists(names_of(ALIASES), max_size=2, unique=True),
    "hostname": st.booleans(),
    "label": st.sampled_from(["", "alias", "ignore"]),
    "ports": st.lists(st.sampled_from(["80/tcp", "53/udp", "8080"]), max_size=2, unique=True),
    "health": st.sampled_from(["", "starting"]),
    "start": st.booleans() | st.just(True),
})


class EventMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = FakeEngine()
        self.registry = Registry()
        self.source = DockerSource(self.registry, "unix:///fake.sock")
        self.include_unhealthy = False
        self.source.replace(list_all(self.engine, SOURCE))
        self.delivered = len(self.engine.events)
        # A refresh that read the engine and has not yet been applied (the read ran in a
        # worker thread while the loop went on).
        self.reading: tuple[dict[str, Network] | None, dict[str, Any]] | None = None

    def pick(self, index: int) -> FakeContainer | None:
        ordered = sorted(self.engine.boxes.values(), key=lambda c: c.id)
        return ordered[index % len(ordered)] if ordered else None

    # --- the engine moves on ----------------------------------------------------------------

    @initialize(networks=st.lists(st.tuples(names_of(NETWORK_NAMES), st.booleans(),
                                            st.booleans()), max_size=3),
                containers=st.lists(CONTAINER, min_size=1, max_size=5))
    def populate(self, networks: list[tuple[str, bool, bool]],
                 containers: list[dict[str, Any]]) -> None:
        """Some networks and containers before the session starts, then a full listing."""
        for name, internal, ipv6 in networks:
            if name not in self.engine.nets:
                self.engine.add_network(name, "bridge", internal=internal, ipv6=ipv6)
        for spec in containers:
            self.create(**spec)
        self.new_session()

    @rule(spec=CONTAINER)
    def create_container(self, spec: dict[str, Any]) -> None:
        self.create(**spec)

    def create(self, name: str, networks: list[str], aliases: list[str], hostname: bool,
               label: str, ports: list[str], health: str, start: bool) -> None:
        engine = self.engine
        if any(c.name == name for c in engine.boxes.values()):
            return  # "Conflict. The container name is already in use"
        labels = {"alias": {"dockdns.alias": f"{name}-extra,{name}.alt"},
                  "ignore": {"dockdns.ignore": "true"}}.get(label, {})
        container = FakeContainer(engine.new_id(), name, f"host-{name}" if hostname else "",
                                  labels, tuple(ports), health)
        for net in networks or ["bridge"]:
            if net in engine.nets:
                container.endpoints[net] = Endpoint(tuple(aliases))
        engine.boxes[container.id] = container
        engine.emit("container", "create", container.id, name=name)  # not subscribed
        if start:
            engine.start(container)

    @rule(index=st.integers(0, 50))
    def start(self, index: int) -> None:
        container = self.pick(index)
        if container is not None:
            self.engine.start(container)

    @rule(index=st.integers(0, 50), stop=st.booleans())
    def die(self, index: int, stop: bool) -> None:
        container = self.pick(index)
        if container is not None:
            self.engine.die(container, stop)

    @rule(index=st.integers(0, 50))
    def restart_policy(self, index: int) -> None:
        """The process exits and the restart policy starts it again, maybe on new addresses."""
        container = self.pick(index)
        if container is not None and container.running:
            self.engine.die(container, stop=False)
            self.engine.start(container)

    @rule(index=st.integers(0, 50), force=st.booleans())
    def destroy(self, index: int, force: bool) -> None:
        container = self.pick(index)
        if container is None or (container.running and not force):
            return  # "cannot remove a running container"
        self.engine.die(container, stop=False)
        del self.engine.boxes[container.id]
        self.engine.emit("container", "destroy", container.id, name=container.name)

    @rule(index=st.integers(0, 50), name=names_of(CONTAINER_NAMES + ("r0", "r1")))
    def rename(self, index: int, name: str) -> None:
        container = self.pick(index)
        if container is None or any(c.name == name for c in self.engine.boxes.values()):
            return
        old, container.name = container.name, name
        self.engine.emit("container", "rename", container.id, name=name, oldName="/" + old)

    @rule(index=st.integers(0, 50), status=st.sampled_from(HEALTH))
    def health(self, index: int, status: str) -> None:
        container = self.pick(index)
        if container is None or not container.health or not container.running:
            return
        container.health = status
        self.engine.emit("container", f"health_status: {status}", container.id,
                         name=container.name)

    @rule(index=st.integers(0, 50), pause=st.booleans())
    def pause(self, index: int, pause: bool) -> None:
        container = self.pick(index)
        if container is None or not container.running or container.paused == pause:
            return
        container.paused = pause
        self.engine.emit("container", "pause" if pause else "unpause", container.id,
                         name=container.name)

    @rule(index=st.integers(0, 50), network=names_of(NETWORK_NAMES + ("bridge",)),
          aliases=st.lists(names_of(ALIASES), max_size=2, unique=True))
    def network_connect(self, index: int, network: str, aliases: list[str]) -> None:
        container = self.pick(index)
        if container is None or network not in self.engine.nets \
                or network in container.endpoints:
            return
        container.endpoints[network] = Endpoint(tuple(aliases))
        if container.running:  # a stopped container only gets the setting: no endpoint yet
            self.engine._allocate(container, network)
            self.engine.connect_event(container, network, "connect")

    @rule(index=st.integers(0, 50), network=names_of(NETWORK_NAMES + ("bridge",)))
    def network_disconnect(self, index: int, network: str) -> None:
        container = self.pick(index)
        if container is None or network not in container.endpoints:
            return
        del container.endpoints[network]
        if container.running and network in self.engine.nets:
            self.engine.connect_event(container, network, "disconnect")

    @rule(name=names_of(NETWORK_NAMES), internal=st.booleans(), ipv6=st.booleans(),
          driver=st.sampled_from(["bridge", "bridge", "macvlan"]))
    def network_create(self, name: str, internal: bool, ipv6: bool, driver: str) -> None:
        if name in self.engine.nets:
            return
        net = self.engine.add_network(name, driver, internal=internal, ipv6=ipv6)
        self.engine.emit("network", "create", net.id, name=name, type=driver)

    @rule(name=names_of(NETWORK_NAMES))
    def network_destroy(self, name: str) -> None:
        net = self.engine.nets.get(name)
        if net is None or any(c.running and name in c.endpoints
                              for c in self.engine.boxes.values()):
            return  # "network has active endpoints"
        del self.engine.nets[name]
        self.engine.emit("network", "destroy", net.id, name=name, type=net.driver)

    # --- the source catches up --------------------------------------------------------------

    @precondition(lambda self: self.delivered < len(self.engine.events))
    @rule(count=st.integers(1, 12))
    def deliver(self, count: int) -> None:
        for message in self.engine.events[self.delivered : self.delivered + count]:
            event = DockerEvent.from_message(message)
            if event is not None:
                self.source.on_event(event)
        self.delivered = min(len(self.engine.events), self.delivered + count)

    @precondition(lambda self: self.reading is None)
    @rule()
    def refresh_reads(self) -> None:
        ids, networks = self.source.take_stale()
        if ids or networks:
            self.reading = fetch(self.engine, SOURCE, ids, networks)

    @precondition(lambda self: self.reading is not None)
    @rule()
    def refresh_applies(self) -> None:
        assert self.reading is not None
        self.source.apply(*self.reading)
        self.reading = None

    @rule()
    def new_session(self) -> None:
        """The engine was lost and is back: subscribe from now, list everything, replace."""
        self.reading = None  # the old session's refresh task was cancelled
        self.delivered = len(self.engine.events)
        self.source.replace(list_all(self.engine, SOURCE))

    @rule()
    def toggle_unhealthy(self) -> None:
        self.include_unhealthy = not self.include_unhealthy
        self.source.set_include_unhealthy(self.include_unhealthy)

    # --- the property -----------------------------------------------------------------------

    def relisted(self) -> Contents:
        fresh = DockerSource(Registry(), "unix:///fake.sock", self.include_unhealthy)
        fresh.replace(list_all(self.engine, SOURCE))
        return contents(fresh.part())

    def published(self) -> Contents | None:
        """The registry's part as a multiset: it is published as deltas, so it lists its
        records in the order they came, not the order a fresh listing gives."""
        part = self.registry.part(SOURCE)
        return None if part is None else contents(part)

    @invariant()
    def caught_up_means_equal(self) -> None:
        if self.delivered < len(self.engine.events) or self.reading is not None:
            return
        ids, networks = self.source.take_stale()
        if ids or networks:
            self.source.return_stale(ids, networks)
            return
        assert self.published() == self.relisted()

    def teardown(self) -> None:
        self.deliver(len(self.engine.events))
        if self.reading is not None:
            self.refresh_applies()
        for _ in range(5):  # each pass reads everything stale; one is enough when quiet
            ids, networks = self.source.take_stale()
            if not ids and not networks:
                break
            self.source.apply(*fetch(self.engine, SOURCE, ids, networks))
        assert self.published() == self.relisted()


Contents = tuple[Counter[Network], Counter[Record], Counter[Client]]


def contents(part: SourcePart) -> Contents:
    return Counter(part.networks), Counter(part.records), Counter(part.clients)


EventMachine.TestCase.settings = settings(
    max_examples=MACHINE_EXAMPLES, stateful_step_count=STEPS, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_event_sequences_converge_to_a_fresh_listing = EventMachine.TestCase


def test_a_paused_container_is_listed_at_a_full_sync() -> None:
    """The engine's "running" status filter leaves paused containers out, though they run and
    Docker's DNS answers them: a session that starts while one is paused must list it."""
    engine = FakeEngine()
    net = engine.add_network("n0", "bridge")
    container = FakeContainer(engine.new_id(), "c0", "", {}, (), "")
    container.endpoints["n0"] = Endpoint()
    engine.boxes[container.id] = container
    engine.start(container)
    container.paused = True
    listing = list_all(engine, SOURCE)
    assert list(listing.containers) == [container.id]
    source = DockerSource(Registry(), "unix:///fake.sock")
    source.replace(listing)
    assert [r.names[0] for r in source.part().records] == ["c0"]
    assert source.part().records[0].network == net.name
