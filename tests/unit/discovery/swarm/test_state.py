"""The Swarm source's state by change: random sequences of cluster changes and partial reads (one
service's tasks, the networks, a sighting of a task container, a full read) against a full
rebuild. After every step, the registry part made of the deltas equals the state's whole part,
and that equals ``build_part`` of everything the state knows; after a final full read, it equals
``build_part`` of the cluster itself, whatever was missed before.

A bigger budget outside CI:
DOCKDNS_FUZZ_EXAMPLES=100000 pytest tests/unit/discovery/swarm/test_state.py
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from discovery.registry.model import SourcePart
from discovery.registry.registry import Registry
from discovery.swarm.model import EngineRead, build_part
from discovery.swarm.state import Delta, SwarmState, diff

EXAMPLES = int(os.environ.get("DOCKDNS_FUZZ_EXAMPLES", "1500"))
MACHINE_EXAMPLES = max(60, EXAMPLES // 10)
SOURCE = "swarm:test"

SERVICES = ("s0", "s1", "s2", "s3")
NETWORKS = {"n0": "10.9.0", "n1": "10.8.0"}
STATES = ("pending", "starting", "running", "running", "failed")


def network(name: str) -> dict[str, Any]:
    return {"Name": name, "Id": f"id-{name}", "Scope": "swarm", "Driver": "overlay",
            "IPAM": {"Config": [{"Subnet": f"{NETWORKS[name]}.0/24"}]}}


def as_multiset(part: SourcePart) -> tuple[Counter[Any], Counter[Any], Counter[Any]]:
    return Counter(part.networks), Counter(part.records), Counter(part.clients)


class Cluster:
    """What the manager would list: services, their tasks, the networks."""

    def __init__(self) -> None:
        self.networks: set[str] = {"n0", "n1"}
        self.services: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.next_task = 0
        self.next_ip = 2

    def service(self, sid: str, dnsrr: bool, alias: bool, nets: tuple[str, ...]) -> None:
        vips = [] if dnsrr else [{"NetworkID": f"id-{n}", "Addr": f"{NETWORKS[n]}.200/24"}
                                 for n in nets]
        self.services[sid] = {
            "ID": sid,
            "Spec": {"Name": f"svc-{sid}", "Mode": {"Replicated": {"Replicas": 2}},
                     "EndpointSpec": {"Mode": "dnsrr" if dnsrr else "vip"},
                     "TaskTemplate": {"Networks": [
                         {"Target": f"id-{n}", "Aliases": ["al"] if alias else []}
                         for n in nets]}},
            "Endpoint": {"VirtualIPs": vips}}

    def task(self, sid: str, state: str) -> str:
        self.next_task += 1
        self.next_ip += 1
        tid = f"t{self.next_task}"
        nets = [a["Target"].removeprefix("id-")
                for a in self.services[sid]["Spec"]["TaskTemplate"]["Networks"]]
        self.tasks[tid] = {
            "ID": tid, "ServiceID": sid, "Slot": self.next_task, "NodeID": "node",
            "DesiredState": "running",
            "Status": {"State": state, "ContainerStatus": {"ContainerID": f"c{tid}" * 4}},
            "NetworksAttachments": [
                {"Network": {"ID": f"id-{n}"}, "Addresses": [f"{NETWORKS[n]}.{self.next_ip}/24"]}
                for n in nets]}
        return tid

    # Each read gets objects of its own, as from the engine's JSON: the cluster changing later
    # must not change what a read returned.
    def listed_networks(self) -> list[dict[str, Any]]:
        return [network(n) for n in sorted(self.networks)]

    def listed_services(self) -> list[dict[str, Any]]:
        return copy.deepcopy(list(self.services.values()))

    def spec(self, sid: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.services.get(sid))

    def listed_tasks(self, sid: str | None = None) -> list[dict[str, Any]]:
        return copy.deepcopy([t for t in self.tasks.values()
                              if t["DesiredState"] == "running" and t["ServiceID"] in self.services
                              and (sid is None or t["ServiceID"] == sid)])


class StateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cluster = Cluster()
        self.state = SwarmState()
        self.registry = Registry()
        self.raw_networks: list[dict[str, Any]] = []  # the networks the state was last given
        self.sequence = 0

    def apply(self, delta: Delta) -> None:
        if self.registry.part(SOURCE) is None:
            self.registry.update(SOURCE, self.state.part())
        else:
            self.registry.change(SOURCE, delta.added, delta.removed)

    # --- the cluster changes ---------------------------------------------------------------

    @rule(sid=st.sampled_from(SERVICES), dnsrr=st.booleans(), alias=st.booleans(),
          both=st.booleans())
    def create_or_update_service(self, sid: str, dnsrr: bool, alias: bool, both: bool) -> None:
        nets = ("n0", "n1") if both and "n1" in self.cluster.networks else ("n0",)
        self.cluster.service(sid, dnsrr, alias, nets)

    @rule(sid=st.sampled_from(SERVICES))
    def remove_service(self, sid: str) -> None:
        self.cluster.services.pop(sid, None)

    @rule(sid=st.sampled_from(SERVICES), state=st.sampled_from(STATES))
    def add_task(self, sid: str, state: str) -> None:
        if sid in self.cluster.services:
            self.cluster.task(sid, state)

    @rule(data=st.data(), state=st.sampled_from(STATES), stop=st.booleans())
    def change_task(self, data: st.DataObject, state: str, stop: bool) -> None:
        if not self.cluster.tasks:
            return
        tid = data.draw(st.sampled_from(sorted(self.cluster.tasks)))
        task = self.cluster.tasks[tid]
        task["Status"]["State"] = state
        if stop:
            task["DesiredState"] = "shutdown"

    @rule(add=st.booleans())
    def toggle_network(self, add: bool) -> None:
        if add:
            self.cluster.networks.add("n1")
        else:
            self.cluster.networks.discard("n1")

    # --- what the source reads -------------------------------------------------------------

    @rule()
    def full_read(self) -> None:
        self.raw_networks = self.cluster.listed_networks()
        self.apply(self.state.replace_all(self.raw_networks, self.cluster.listed_services(),
                                          self.cluster.listed_tasks(), self.sequence))

    @rule(sids=st.sets(st.sampled_from(SERVICES), min_size=1), specs=st.booleans())
    def service_read(self, sids: set[str], specs: bool) -> None:
        services = {sid: self.cluster.spec(sid) for sid in sids} if specs else {}
        tasks = {sid: self.cluster.listed_tasks(sid) for sid in sids
                 if sid in self.cluster.services}
        self.apply(self.state.set_services(services, tasks, self.sequence))

    @rule()
    def network_read(self) -> None:
        self.raw_networks = self.cluster.listed_networks()
        self.apply(self.state.set_networks(self.raw_networks))

    @rule(data=st.data(), up=st.booleans())
    def container_seen(self, data: st.DataObject, up: bool) -> None:
        if not self.cluster.tasks:
            return
        task = self.cluster.tasks[data.draw(st.sampled_from(sorted(self.cluster.tasks)))]
        self.sequence += 1
        self.apply(self.state.task_seen(task["ServiceID"], task["ID"], up, self.sequence))

    @rule(with_bridge=st.booleans())
    def clients_read(self, with_bridge: bool) -> None:
        gwbridge = {"Name": "docker_gwbridge", "Id": "gw",
                    "IPAM": {"Config": [{"Subnet": "172.31.0.0/16"}]},
                    "Containers": {"k1": {"IPv4Address": "172.31.0.3/16"}}}
        containers = [{"Id": "k1", "Names": ["/x"], "NetworkSettings": {"Networks": {
            "n0": {"IPAddress": "10.9.0.250"}}}}]
        self.apply(self.state.set_clients(gwbridge if with_bridge else None,
                                          containers if with_bridge else []))

    # --- what must hold ---------------------------------------------------------------------

    def rebuilt(self, networks: list[dict[str, Any]], services: list[dict[str, Any]],
                tasks: list[dict[str, Any]]) -> SourcePart:
        part = build_part(EngineRead(networks=networks, services=services, tasks=tasks,
                                     local=self.state.local))
        return SourcePart(networks=part.networks + self.state.part().networks[
            len(part.networks):], records=part.records, clients=self.state.part().clients)

    @invariant()
    def deltas_add_up_to_the_state(self) -> None:
        part = self.registry.part(SOURCE)
        if part is not None:
            assert as_multiset(part) == as_multiset(self.state.part())

    @invariant()
    def the_state_is_a_rebuild_of_what_it_knows(self) -> None:
        known_tasks = [t for tasks in self.state.tasks.values() for t in tasks]
        assert as_multiset(self.state.part()) == as_multiset(self.rebuilt(
            self.raw_networks, list(self.state.services.values()), known_tasks))

    def teardown(self) -> None:
        self.full_read()
        assert as_multiset(self.registry.part(SOURCE) or SourcePart()) == as_multiset(
            self.rebuilt(self.cluster.listed_networks(), self.cluster.listed_services(),
                         self.cluster.listed_tasks()))


StateMachine.TestCase.settings = settings(
    max_examples=MACHINE_EXAMPLES, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_changes_add_up_to_a_full_rebuild = StateMachine.TestCase


def test_diff_is_a_multiset_difference() -> None:
    assert diff((1, 2, 2, 3), (2, 3, 3, 4)) == ((3, 4), (1, 2))
    assert diff((1, 2), (1, 2)) == ((), ())


def test_a_sighting_newer_than_a_read_survives_it() -> None:
    """A container start seen while a read of its service was under way (the read began before
    it) is kept, though the read shows the task still starting; an older one goes once the
    manager agrees."""
    cluster = Cluster()
    cluster.service("s0", dnsrr=True, alias=False, nets=("n0",))
    tid = cluster.task("s0", "starting")
    state = SwarmState()
    state.replace_all(cluster.listed_networks(), cluster.listed_services(),
                      cluster.listed_tasks(), 0)
    assert state.part().records == ()
    delta = state.task_seen("s0", tid, True, 5)
    assert {r.names for r in delta.added.records} == {("svc-s0",), ("tasks.svc-s0",),
                                                      (f"svc-s0.1.{tid}", (f"c{tid}" * 4)[:12])}
    state.set_services({}, {"s0": cluster.listed_tasks("s0")}, started=4)  # began before: kept
    assert state.local == {tid: True}
    state.set_services({}, {"s0": cluster.listed_tasks("s0")}, started=6)  # still starting
    assert state.local == {tid: True}
    cluster.tasks[tid]["Status"]["State"] = "running"
    state.set_services({}, {"s0": cluster.listed_tasks("s0")}, started=7)  # the manager agrees
    assert state.local == {}
    assert len(state.part().records) == 3


def test_a_died_container_is_dropped_before_the_manager_knows() -> None:
    cluster = Cluster()
    cluster.service("s0", dnsrr=False, alias=False, nets=("n0",))
    tid = cluster.task("s0", "running")
    state = SwarmState()
    state.replace_all(cluster.listed_networks(), cluster.listed_services(),
                      cluster.listed_tasks(), 0)
    assert len(state.part().records) == 3  # VIP, tasks., the task
    delta = state.task_seen("s0", tid, False, 1)
    assert len(delta.removed.records) == 3 and not delta.added.records
    assert state.converging("s0")  # the manager still says running: look again
    assert not state.task_seen("s0", tid, False, 2)  # the same again changes nothing


def test_changed_names_the_services_whose_tasks_moved() -> None:
    cluster = Cluster()
    cluster.service("s0", dnsrr=False, alias=False, nets=("n0",))
    cluster.service("s1", dnsrr=False, alias=False, nets=("n0",))
    cluster.task("s0", "running")
    state = SwarmState()
    first = state.replace_all(cluster.listed_networks(), cluster.listed_services(),
                              cluster.listed_tasks(), 0)
    assert first.changed == {"s0", "s1"}
    cluster.task("s1", "pending")
    again = state.replace_all(cluster.listed_networks(), cluster.listed_services(),
                              cluster.listed_tasks(), 0)
    assert again.changed == {"s1"} and not again  # a pending task: no records yet
    assert state.converging("s1") and state.converging("s0")  # s0: 1 of 2 replicas
    gone = state.set_services({"s0": None}, {}, 0)
    assert gone.changed == {"s0"} and len(gone.removed.records) == 3
    assert state.clear_services().changed == {"s1"} and state.part() == SourcePart()


def test_a_network_going_takes_its_records_along() -> None:
    cluster = Cluster()
    cluster.service("s0", dnsrr=False, alias=False, nets=("n0", "n1"))
    cluster.task("s0", "running")
    state = SwarmState()
    state.replace_all(cluster.listed_networks(), cluster.listed_services(),
                      cluster.listed_tasks(), 0)
    assert {r.network for r in state.part().records} == {"n0", "n1"}
    cluster.networks.discard("n1")
    delta = state.set_networks(cluster.listed_networks())
    assert [n.name for n in delta.removed.networks] == ["n1"]
    assert {r.network for r in delta.removed.records} == {"n1"} and not delta.added.records
    assert as_multiset(state.part()) == as_multiset(build_part(EngineRead(
        networks=cluster.listed_networks(), services=cluster.listed_services(),
        tasks=cluster.listed_tasks())))


def test_a_task_as_last_read() -> None:
    cluster = Cluster()
    cluster.service("s0", dnsrr=False, alias=False, nets=("n0",))
    tid = cluster.task("s0", "assigned")
    state = SwarmState()
    assert state.task("s0", tid) is None  # nothing read yet
    state.replace_all(cluster.listed_networks(), cluster.listed_services(),
                      cluster.listed_tasks(), 0)
    found = state.task("s0", tid)
    assert found is not None and found["ID"] == tid
    assert state.task("s0", "elsewhere") is None and state.task("s9", tid) is None
