"""Swarm API objects -> registry part, as Swarm's embedded DNS names things: the service name
and its aliases answer the VIP (vip mode) or the task addresses (dnsrr), ``tasks.<name>`` the
task addresses, each task its container name and short ID with a PTR; ingress and tasks that are
not running get nothing; a local engine maps overlay containers through docker_gwbridge."""

from __future__ import annotations

import ipaddress
from typing import Any

from discovery.registry.model import SCOPE_LOCAL, SCOPE_SWARM, Client, Record
from discovery.registry.registry import Registry
from discovery.swarm.model import (
    EngineRead,
    build_part,
    converging,
    has_healthcheck,
    swarm_networks,
    task_container_name,
    task_counts,
    task_healthcheck,
)

NET_ID = "netid0000001"
INGRESS_ID = "ingress00001"
CONTAINER_ID = "c0ffee1234567890abcdef"


def network(name: str, net_id: str, subnet: str, **extra: Any) -> dict[str, Any]:
    return {"Name": name, "Id": net_id, "Scope": "swarm", "Driver": "overlay",
            "IPAM": {"Config": [{"Subnet": subnet, "Gateway": "ignored"}]}, **extra}


NETWORKS = [
    network("appnet", NET_ID, "10.9.0.0/24"),
    network("ingress", INGRESS_ID, "10.255.0.0/16", Ingress=True),
    {"Name": "bridge", "Id": "local1", "Scope": "local", "Driver": "bridge"},
]


def service(name: str, sid: str, mode: str = "vip", vip: str | None = "10.9.0.2/24",
            aliases: tuple[str, ...] = ()) -> dict[str, Any]:
    vips = [{"NetworkID": INGRESS_ID, "Addr": "10.255.0.5/16"}]
    if vip:
        vips.append({"NetworkID": NET_ID, "Addr": vip})
    return {
        "ID": sid,
        "Spec": {"Name": name, "EndpointSpec": {"Mode": mode},
                 "TaskTemplate": {"Networks": [{"Target": NET_ID, "Aliases": list(aliases)}]}},
        "Endpoint": {"Spec": {"Mode": mode}, "VirtualIPs": vips if mode == "vip" else []},
    }


def task(sid: str, tid: str, slot: int, address: str, state: str = "running",
         desired: str = "running", container_id: str = CONTAINER_ID,
         node: str = "node1") -> dict[str, Any]:
    return {
        "ID": tid, "ServiceID": sid, "Slot": slot, "NodeID": node, "DesiredState": desired,
        "Status": {"State": state, "ContainerStatus": {"ContainerID": container_id}},
        "NetworksAttachments": [
            {"Network": {"ID": INGRESS_ID, "Spec": {"Name": "ingress"}},
             "Addresses": ["10.255.0.9/16"]},
            {"Network": {"ID": NET_ID, "Spec": {"Name": "appnet"}}, "Addresses": [address]},
        ],
    }


def by_names(records: tuple[Record, ...]) -> dict[tuple[str, ...], Record]:
    return {record.names: record for record in records}


def test_vip_service_answers_its_vip_and_tasks_answer_task_addresses() -> None:
    read = EngineRead(networks=NETWORKS,
                      services=[service("Web", "s1", aliases=("Front", "front"))],
                      tasks=[task("s1", "t2", 2, "10.9.0.4/24", container_id="b" * 64),
                             task("s1", "t1", 1, "10.9.0.3/24")])
    part = build_part(read)
    records = by_names(part.records)
    vip = records[("web", "front")]
    assert (vip.ipv4, vip.ipv6, vip.network, vip.ptr) == (("10.9.0.2",), (), "appnet", None)
    tasks = records[("tasks.web", "tasks.front")]
    # Sorted by slot, whatever order the engine listed the tasks in.
    assert tasks.ipv4 == ("10.9.0.3", "10.9.0.4")
    one = records[("web.1.t1", CONTAINER_ID[:12])]
    assert one.ipv4 == ("10.9.0.3",) and one.ptr == "Web.1.t1.appnet"
    assert records[("web.2.t2", "b" * 12)].ipv4 == ("10.9.0.4",)
    # Nothing for ingress: not as a network, not as an address.
    assert [n.name for n in part.networks] == ["appnet"]
    assert all("10.255." not in a for r in part.records for a in r.ipv4)
    assert {r.source for r in part.records} == {"swarm"}


def test_dnsrr_service_answers_the_task_addresses() -> None:
    read = EngineRead(networks=NETWORKS, services=[service("db", "s2", mode="dnsrr", vip=None)],
                      tasks=[task("s2", "t1", 1, "10.9.0.7/24"), task("s2", "t2", 2, "10.9.0.8")])
    records = by_names(build_part(read).records)
    assert records[("db",)].ipv4 == ("10.9.0.7", "10.9.0.8")
    assert records[("tasks.db",)].ipv4 == ("10.9.0.7", "10.9.0.8")


def test_vip_mode_without_a_vip_on_the_network_falls_back_to_the_tasks() -> None:
    read = EngineRead(networks=NETWORKS, services=[service("api", "s3", vip=None)],
                      tasks=[task("s3", "t1", 1, "10.9.0.11/24")])
    assert by_names(build_part(read).records)[("api",)].ipv4 == ("10.9.0.11",)


def test_ipv6_vip_and_task_addresses() -> None:
    read = EngineRead(networks=NETWORKS, services=[service("six", "s4", vip="fd00:9::2/64")],
                      tasks=[task("s4", "t1", 1, "fd00:9::3/64")])
    records = by_names(build_part(read).records)
    assert (records[("six",)].ipv4, records[("six",)].ipv6) == ((), ("fd00:9::2",))
    assert records[("tasks.six",)].ipv6 == ("fd00:9::3",)


def test_only_running_tasks_with_running_desired_state_count() -> None:
    read = EngineRead(networks=NETWORKS, services=[service("web", "s1")], tasks=[
        task("s1", "t1", 1, "10.9.0.3/24", state="starting"),
        task("s1", "t2", 2, "10.9.0.4/24", desired="shutdown"),
    ])
    # No running task: the service is not bound anywhere, so it has no names at all.
    assert build_part(read).records == ()
    read = EngineRead(networks=NETWORKS, services=[service("web", "s1")], tasks=[
        task("s1", "t1", 1, "10.9.0.3/24", state="starting"),
        task("s1", "t3", 3, "10.9.0.5/24"),
    ])
    assert by_names(build_part(read).records)[("tasks.web",)].ipv4 == ("10.9.0.5",)


def test_bad_addresses_are_skipped() -> None:
    read = EngineRead(networks=NETWORKS, services=[service("web", "s1", vip="not-an-ip")],
                      tasks=[task("s1", "t1", 1, "garbage"), task("s1", "t2", 2, "10.9.0.4/24")])
    records = by_names(build_part(read).records)
    assert records[("web",)].ipv4 == ("10.9.0.4",)  # no usable VIP: the tasks
    assert ("web.1.t1", CONTAINER_ID[:12]) not in records


def test_global_service_task_names_use_the_node() -> None:
    assert task_container_name("agent", {"ID": "tid", "Slot": 0, "NodeID": "nodeX"}) == \
        "agent.nodeX.tid"
    assert task_container_name("web", {"ID": "tid", "Slot": 3}) == "web.3.tid"


def test_swarm_networks_skip_ingress_and_local_networks() -> None:
    found = swarm_networks([*NETWORKS, network("zeta", "z1", "bad subnet", Internal=True)])
    assert [(n.name, n.scope) for n in found] == [("appnet", SCOPE_SWARM), ("zeta", SCOPE_SWARM)]
    assert found[0].subnets == (ipaddress.ip_network("10.9.0.0/24"),)
    assert found[1].subnets == () and found[1].internal


def test_gwbridge_maps_overlay_containers_to_their_networks() -> None:
    gwbridge = {"Name": "docker_gwbridge", "Id": "gw1",
                "IPAM": {"Config": [{"Subnet": "172.31.0.0/16"}]},
                "Containers": {"cid1": {"IPv4Address": "172.31.0.3/16", "IPv6Address": ""},
                               "cid2": {"IPv4Address": "172.31.0.4/16"}}}
    containers = [
        {"Id": "cid1", "Names": ["/web.1.t1"], "NetworkSettings": {"Networks": {
            "appnet": {"IPAddress": "10.9.0.3", "GlobalIPv6Address": "fd00:9::3"},
            "ingress": {"IPAddress": "10.255.0.9"},
            "docker_gwbridge": {"IPAddress": "172.31.0.3"}}}},
        # On docker_gwbridge only (ingress-only task): no networks of its own, no client.
        {"Id": "cid2", "Names": ["/x"], "NetworkSettings": {"Networks": {
            "ingress": {}, "docker_gwbridge": {}}}},
        # Not on docker_gwbridge: a plain local container, not this source's business.
        {"Id": "cid3", "Names": ["/y"], "NetworkSettings": {"Networks": {"bridge": {}}}},
    ]
    part = build_part(EngineRead(gwbridge=gwbridge, containers=containers))
    assert part.clients == tuple(Client(a, ("appnet",), "web.1.t1")
                                 for a in ("172.31.0.3", "10.9.0.3", "fd00:9::3"))
    (gw,) = part.networks
    assert (gw.name, gw.scope, gw.default_bridge) == ("docker_gwbridge", SCOPE_LOCAL, True)
    assert gw.subnets == (ipaddress.ip_network("172.31.0.0/16"),)
    assert part.records == ()


def test_the_part_answers_through_the_registry() -> None:
    # End to end through the registry: a client on appnet sees the service by any case.
    registry = Registry()
    registry.update("swarm", build_part(EngineRead(
        networks=NETWORKS, services=[service("web", "s1", aliases=("front",))],
        tasks=[task("s1", "t1", 1, "10.9.0.3/24")])))
    snapshot = registry.snapshot
    assert set(snapshot.by_network["appnet"]) >= {"web", "front", "tasks.web", "tasks.front",
                                                   "web.1.t1", CONTAINER_ID[:12]}


def test_what_this_node_saw_beats_the_manager() -> None:
    """A task container seen starting here counts before the manager says running; one seen
    dying does not count though the manager still says running."""
    starting = task("s1", "t1", 1, "10.9.0.3/24", state="starting")
    running = task("s1", "t2", 2, "10.9.0.4/24")
    read = EngineRead(networks=NETWORKS, services=[service("web", "s1")],
                      tasks=[starting, running], local={"t1": True, "t2": False})
    records = by_names(build_part(read).records)
    assert records[("tasks.web",)].ipv4 == ("10.9.0.3",)
    assert task_counts(starting, {}) is False and task_counts(starting, {"t1": True})
    # Never a task Swarm is shutting down, whatever was seen.
    assert not task_counts(task("s1", "t3", 3, "10.9.0.5", desired="shutdown"), {"t3": True})


def test_converging() -> None:
    web = service("web", "s1")
    web["Spec"]["Mode"] = {"Replicated": {"Replicas": 2}}
    one, two = task("s1", "t1", 1, "10.9.0.3"), task("s1", "t2", 2, "10.9.0.4")
    assert not converging(web, [one, two], {})
    assert converging(web, [one], {})  # a replica short
    assert converging(web, [one, two, task("s1", "t3", 3, "10.9.0.5")], {})  # one too many
    assert converging(web, [one, task("s1", "t2", 2, "10.9.0.4", state="pending")], {})
    assert converging(web, [one, two], {"t1": False})  # died here; the manager does not know
    assert not converging(web, [one, two], {"t1": True})
    assert converging({**web, "UpdateStatus": {"State": "updating"}}, [one, two], {})
    assert not converging({**web, "UpdateStatus": {"State": "completed"}}, [one, two], {})
    glob = service("agent", "s2")
    glob["Spec"]["Mode"] = {"Global": {}}
    assert not converging(glob, [task("s2", "t9", 0, "10.9.0.9")], {})


def test_health_checks() -> None:
    assert has_healthcheck({"Config": {"Healthcheck": {"Test": ["CMD-SHELL", "true"]}}})
    assert not has_healthcheck({"Config": {"Healthcheck": {"Test": ["NONE"]}}})
    assert not has_healthcheck({"Config": {}}) and not has_healthcheck({})


def test_a_task_containers_health_check_from_its_spec_and_image() -> None:
    """As the engine merges them at create: the spec's test, or the image's when the spec gives
    none; NONE in the spec switches the image's off."""
    def task_with(test: list[str] | None) -> dict[str, Any]:
        spec: dict[str, Any] = {} if test is None else {"Healthcheck": {"Test": test}}
        return {"Spec": {"ContainerSpec": spec}}
    checked_image = {"Config": {"Healthcheck": {"Test": ["CMD", "true"]}}}
    plain_image: dict[str, Any] = {"Config": {"Healthcheck": None}}
    assert task_healthcheck(task_with(None), checked_image)
    assert task_healthcheck(task_with([]), checked_image)  # intervals only: the image's test
    assert not task_healthcheck(task_with(["NONE"]), checked_image)
    assert task_healthcheck(task_with(["CMD-SHELL", "true"]), plain_image)
    assert not task_healthcheck(task_with(None), plain_image)
    assert not task_healthcheck({}, {})
