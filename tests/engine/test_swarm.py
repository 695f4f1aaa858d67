"""Swarm services against Swarm's own embedded DNS, on a single-node Swarm of the test engine.

dockdns runs on the host, listening on the docker_gwbridge gateway: a client container on an
overlay network reaches it through docker_gwbridge, so its queries arrive from its gwbridge
address, which dockdns must map back to that container's networks. Every question is asked from
the client's network namespace, of dockdns and of Docker's 127.0.0.11 (only names Docker knows).
Nothing can leave the machine: dockdns's only upstream is a closed port on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from tests.support.daemon import RunningDaemon, dockdns
from tests.support.engine import Box, Lab, Question, lab, wait_for
from tests.support.net import addresses, ask, free_port
from tests.support.swarm import SwarmLab, gwbridge_gateway

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

PREFIX = "swarm-"
POOL = "10.251.0.0/16"
# Bounds for changes to show up in dockdns (events, then re-reads); generous for 2 cores.
CHANGE_SECONDS = 60.0

Answer = tuple[str, frozenset[tuple[str, str, int, str]]]


def summary(reply: dns.message.Message | None) -> Answer:
    """What is compared with Docker: the rcode and the answer records as a set."""
    if reply is None:
        return ("no reply", frozenset())
    return (dns.rcode.to_text(reply.rcode()), frozenset(
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rrset.ttl, rdata.to_text())
        for rrset in reply.answer for rdata in rrset))


def unanswered(reply: dns.message.Message | None) -> bool:
    """dockdns does not know the name: no addresses and an error (it cannot forward: the only
    upstream is a closed port), or no reply at all."""
    return reply is None or (not a_records(reply) and reply.rcode() != dns.rcode.NOERROR)


def a_records(reply: dns.message.Message | None) -> list[str]:
    """The A/AAAA addresses of a reply, in the order they came."""
    if reply is None:
        return []
    return [rdata.to_text() for rrset in reply.answer
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for rdata in rrset]


@dataclass
class Cluster:
    swarm: SwarmLab
    client: Box  # on swarm-ovl
    stranger: Box  # on swarm-other only
    server: RunningDaemon
    loopback: int  # dockdns's port on 127.0.0.1, for the host itself

    @property
    def lab(self) -> Lab:
        return self.swarm.lab

    def ask(self, box: Box, questions: Sequence[Question]) -> list[dns.message.Message | None]:
        return self.lab.ask(box, self.server.host, questions, port=self.server.port)

    def ask_one(self, box: Box, name: str, rdtype: str = "A") -> dns.message.Message | None:
        return self.ask(box, [Question(name, rdtype)])[0]

    def compare(self, box: Box, questions: Sequence[Question]) -> None:
        """dockdns and Docker give the same rcode and answer set to every question. Docker's
        resolver learns of new tasks a moment after the engine reports them running, so both are
        asked again until they agree, within a bound; then every difference is reported."""
        def differences() -> list[str]:
            ours = self.ask(box, questions)
            docker = self.swarm.ask_docker(box, questions)
            return [f"{q.name} {q.rdtype}{' tcp' if q.tcp else ''}: dockdns {summary(o)} "
                    f"!= docker {summary(d)}"
                    for q, o, d in zip(questions, ours, docker, strict=True)
                    if o is None or d is None or summary(o) != summary(d)]
        last: list[str] = []

        def agree() -> bool:
            nonlocal last
            last = differences()
            return not last
        try:
            wait_for(agree, timeout=CHANGE_SECONDS, interval=1.0, message="agreement")
        except AssertionError:
            pytest.fail("dockdns differs from Docker's resolver:\n" + "\n".join(last))

    def wait_tasks(self, box: Box, service: str, network: str, count: int) -> set[str]:
        """Wait until dockdns answers tasks.<service> from ``box`` with exactly the addresses
        the engine reports for ``count`` running tasks."""
        self.swarm.wait_running(service, count)
        expected = self.swarm.task_ips(service, network)
        assert len(expected) == count
        wait_for(lambda: set(a_records(self.ask_one(box, f"tasks.{service}"))) == expected,
                 timeout=CHANGE_SECONDS, interval=0.5,
                 message=f"dockdns answering tasks.{service} with {sorted(expected)}")
        return expected


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with lab(PREFIX, pool=POOL) as made:
        swarm = SwarmLab(made)
        try:
            swarm.overlay("swarm-ovl")
            swarm.overlay("swarm-other")
            client = swarm.attach("swarm-client", "swarm-ovl")
            stranger = swarm.attach("swarm-stranger", "swarm-other")
            swarm.service("swarm-web", ["swarm-ovl"], replicas=3,
                          aliases={"swarm-ovl": ["swarm-www"]})
            swarm.service("swarm-rr", ["swarm-ovl"], replicas=2, dnsrr=True)
            swarm.service("swarm-far", ["swarm-other"], replicas=1)
            swarm.service("swarm-glob", ["swarm-ovl"], global_mode=True)
            gateway = gwbridge_gateway(made.client)
            closed = free_port()  # nothing listens there: no query can leave the machine
            # The host asks over loopback: its own packets to the gwbridge address leave through
            # lo and are masqueraded by Docker's gwbridge rule to the host's main address.
            loopback = free_port()
            with dockdns("--upstream", f"127.0.0.1:{closed}", "--listen",
                         f"127.0.0.1:{loopback}", host=gateway, docker=True) as server:
                yield Cluster(swarm, client, stranger, server, loopback)
        finally:
            swarm.cleanup()


def test_service_names_answer_like_swarm_dns(cluster: Cluster) -> None:
    swarm, client = cluster.swarm, cluster.client
    cluster.wait_tasks(client, "swarm-web", "swarm-ovl", 3)
    cluster.wait_tasks(client, "swarm-rr", "swarm-ovl", 2)
    vip = swarm.vip("swarm-web", "swarm-ovl")
    assert a_records(cluster.ask_one(client, "swarm-web")) == [vip]
    assert set(a_records(cluster.ask_one(client, "swarm-rr"))) == swarm.task_ips(
        "swarm-rr", "swarm-ovl")
    cluster.wait_tasks(client, "swarm-glob", "swarm-ovl", 1)
    container = swarm.task_container(swarm.running_tasks("swarm-web")[0])
    task_ip = container["NetworkSettings"]["Networks"]["swarm-ovl"]["IPAddress"]
    # A global service's tasks are named <service>.<node ID>.<task ID> (no slot).
    global_task = swarm.task_container(swarm.running_tasks("swarm-glob")[0])
    global_ip = global_task["NetworkSettings"]["Networks"]["swarm-ovl"]["IPAddress"]
    cluster.compare(client, [
        Question("swarm-web"),  # the VIP
        Question("tasks.swarm-web"),
        Question("swarm-rr"),  # dnsrr: every task
        Question("tasks.swarm-rr"),
        Question("tasks.swarm-rr", tcp=True),
        Question("swarm-web.swarm-ovl"),  # name.network
        Question("tasks.swarm-web.swarm-ovl"),
        Question("swarm-www"),  # a service alias
        Question("tasks.swarm-www"),
        Question("SWARM-Web"),
        Question("swarm-web", "AAAA"),  # known name, no IPv6: NOERROR, empty
        Question("swarm-web", "MX"),
        Question("swarm-rr", "AAAA"),
        Question(container["Name"].lstrip("/")),  # the task's container name
        Question(container["Id"][:12]),  # and its short ID
        Question(dns.reversename.from_address(task_ip).to_text(), "PTR"),
        Question("swarm-glob"),
        Question("tasks.swarm-glob"),
        Question(global_task["Name"].lstrip("/")),
        Question(dns.reversename.from_address(global_ip).to_text(), "PTR"),
    ])


def test_scaling_up_shows_in_tasks(cluster: Cluster) -> None:
    swarm, client = cluster.swarm, cluster.client
    before = cluster.wait_tasks(client, "swarm-web", "swarm-ovl",
                                len(swarm.running_tasks("swarm-web")))
    swarm.scale("swarm-web", len(before) + 1)
    after = cluster.wait_tasks(client, "swarm-web", "swarm-ovl", len(before) + 1)
    assert before < after
    cluster.compare(client, [Question("tasks.swarm-web"), Question("swarm-web"),
                             Question("tasks.swarm-www")])


def test_dnsrr_order_rotates(cluster: Cluster) -> None:
    client = cluster.client
    expected = cluster.wait_tasks(client, "swarm-rr", "swarm-ovl", 2)
    replies = cluster.ask(client, [Question("swarm-rr") for _ in range(12)])
    orders = [tuple(a_records(reply)) for reply in replies]
    assert all(set(order) == expected for order in orders)
    assert len({order[0] for order in orders}) > 1, orders


def test_a_client_sees_only_services_on_its_networks(cluster: Cluster) -> None:
    swarm, client, stranger = cluster.swarm, cluster.client, cluster.stranger
    cluster.wait_tasks(stranger, "swarm-far", "swarm-other", 1)
    cluster.compare(stranger, [Question("swarm-far"), Question("tasks.swarm-far")])
    assert a_records(cluster.ask_one(stranger, "swarm-far")) == [
        swarm.vip("swarm-far", "swarm-other")]
    # swarm-web lives on swarm-ovl only: the stranger gets none of its addresses, and the client
    # none of swarm-far's (dockdns cannot forward: SERVFAIL). Docker is not asked: it would
    # forward.
    for name in ("swarm-web", "tasks.swarm-web", "swarm-web.swarm-ovl", "swarm-rr"):
        assert unanswered(cluster.ask_one(stranger, name)), name
    assert unanswered(cluster.ask_one(client, "tasks.swarm-far"))
    # The host itself (not a container) sees every service.
    for name, network in (("swarm-far", "swarm-other"), ("swarm-web", "swarm-ovl")):
        reply = ask("127.0.0.1", cluster.loopback, name)
        assert addresses(reply) == {swarm.vip(name, network)}


def test_removed_service_disappears(cluster: Cluster) -> None:
    swarm, client = cluster.swarm, cluster.client
    swarm.service("swarm-gone", ["swarm-ovl"], replicas=1,
                  aliases={"swarm-ovl": ["swarm-gone-alias"]})
    cluster.wait_tasks(client, "swarm-gone", "swarm-ovl", 1)
    cluster.compare(client, [Question("swarm-gone"), Question("swarm-gone-alias"),
                             Question("tasks.swarm-gone")])
    swarm.remove("swarm-gone")
    names = ("swarm-gone", "tasks.swarm-gone", "swarm-gone-alias", "tasks.swarm-gone-alias")

    def gone() -> bool:
        return all(unanswered(r) for r in cluster.ask(client, [Question(n) for n in names]))
    wait_for(gone, timeout=CHANGE_SECONDS, interval=0.5, message="swarm-gone's names disappearing")


def test_only_healthy_tasks_are_answered(cluster: Cluster) -> None:
    """A task with a health check is not answered until the check passes (Swarm keeps it in
    `starting`, and so does Docker's resolver)."""
    swarm, client = cluster.swarm, cluster.client
    swarm.service("swarm-health", ["swarm-ovl"], healthcheck={
        "test": ["CMD-SHELL", "test -e /tmp/ok"], "interval": 500_000_000,
        "timeout": 2_000_000_000, "retries": 100_000})

    def starting() -> dict[str, Any] | None:
        for task in swarm.tasks("swarm-health"):
            status = task.get("Status") or {}
            if status.get("State") == "starting" and (status.get("ContainerStatus") or {}).get(
                    "ContainerID"):
                return task
        return None
    task = wait_for(starting, timeout=180, interval=0.5, message="swarm-health's task starting")
    # A service made after the unhealthy container runs: once dockdns answers it, its read of
    # the cluster also saw swarm-health's task, still starting.
    swarm.service("swarm-mark", ["swarm-ovl"])
    cluster.wait_tasks(client, "swarm-mark", "swarm-ovl", 1)
    assert swarm.tasks("swarm-health")[0]["Status"]["State"] == "starting"
    for name in ("swarm-health", "tasks.swarm-health"):
        assert unanswered(cluster.ask_one(client, name)), name
    container = swarm.task_container(task)
    swarm.client.api.exec_start(swarm.client.api.exec_create(
        container["Id"], ["touch", "/tmp/ok"])["Id"])
    cluster.wait_tasks(client, "swarm-health", "swarm-ovl", 1)
    cluster.compare(client, [Question("swarm-health"), Question("tasks.swarm-health")])
    swarm.remove("swarm-mark")
    swarm.remove("swarm-health")
