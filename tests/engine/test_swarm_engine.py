"""The Swarm source when its engine goes away and comes back: the last known services keep
answering, and the source reconnects and catches up. The engine is reached through a relay socket
the test can cut, so the shared engine itself is never disturbed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from tests.support.daemon import RunningDaemon, dockdns
from tests.support.engine import Question, engine_socket, lab, wait_for
from tests.support.net import addresses, ask, free_port
from tests.support.sockproxy import UnixRelay
from tests.support.swarm import SwarmLab, gwbridge_gateway

pytestmark = [pytest.mark.docker, pytest.mark.swarm]


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[UnixRelay]:
    made = UnixRelay(tmp_path / "docker.sock", engine_socket())
    made.start()
    try:
        yield made
    finally:
        made.stop()


def count(server: RunningDaemon, text: str) -> int:
    return server.log().count(text)


def test_engine_loss_keeps_last_names_then_reconnects(relay: UnixRelay, upstream: str) -> None:
    with lab("swarm-", pool="10.251.0.0/16") as made:
        swarm = SwarmLab(made)
        try:
            swarm.overlay("swarm-eng")
            swarm.service("swarm-kept", ["swarm-eng"], replicas=1)
            swarm.wait_running("swarm-kept", 1)
            vip = swarm.vip("swarm-kept", "swarm-eng")
            tasks = swarm.task_ips("swarm-kept", "swarm-eng")
            with dockdns("--docker-host", relay.url, "--swarm-refresh", "0.5",
                         "--upstream", upstream, docker=True) as server:
                def answers(name: str) -> set[str]:
                    return addresses(ask(server.host, server.port, name))
                wait_for(lambda: answers("tasks.swarm-kept") == tasks, timeout=60, interval=0.25,
                         message="dockdns answering tasks.swarm-kept")
                assert answers("swarm-kept") == {vip}

                relay.stop()
                wait_for(lambda: count(server, "engine unavailable"), timeout=60,
                         message="dockdns noticing the engine is gone")
                swarm.remove("swarm-kept")
                # Several reads have failed since the service went: what dockdns knew stays.
                failed = count(server, "engine unavailable")
                wait_for(lambda: count(server, "engine unavailable") >= failed + 2, timeout=60,
                         message="two more failed reconnection attempts")
                assert answers("swarm-kept") == {vip}
                assert answers("tasks.swarm-kept") == tasks

                relay.start()
                def forgotten() -> bool:
                    reply = ask(server.host, server.port, "swarm-kept")
                    return not addresses(reply) and reply.rcode() != dns.rcode.NOERROR
                wait_for(forgotten, timeout=90, interval=0.25,
                         message="dockdns reconnecting and dropping the removed service")
                assert count(server, "is a Swarm manager") >= 2
        finally:
            swarm.cleanup()


def test_swarm_managers_fail_over_and_map_no_clients(tmp_path: Path, upstream: str) -> None:
    """--swarm-manager: the first manager that answers gives the services; being another node's
    engine, it maps no clients here, so without a local engine an overlay container's gwbridge
    address is a stranger (REFUSED)."""
    with lab("swarm-", pool="10.251.0.0/16") as made:
        swarm = SwarmLab(made)
        try:
            swarm.overlay("swarm-mgr")
            box = swarm.attach("swarm-mgr-client", "swarm-mgr")
            swarm.service("swarm-svc-m", ["swarm-mgr"], replicas=2)
            swarm.wait_running("swarm-svc-m", 2)
            tasks = swarm.task_ips("swarm-svc-m", "swarm-mgr")
            missing = f"unix://{tmp_path / 'no-engine.sock'}"
            loopback = free_port()
            with dockdns("--swarm-manager", missing, "--swarm-manager",
                         f"unix://{engine_socket()}", "--listen", f"127.0.0.1:{loopback}",
                         "--upstream", upstream,
                         host=gwbridge_gateway(made.client)) as server:
                wait_for(lambda: addresses(
                    ask("127.0.0.1", loopback, "tasks.swarm-svc-m")) == tasks,
                         timeout=60, interval=0.25, message="dockdns answering tasks.swarm-svc-m")
                assert "engine unavailable" in server.log()  # the first one was tried first
                reply = made.ask(box, server.host, [Question("tasks.swarm-svc-m")],
                                 port=server.port)[0]
                assert reply is not None and reply.rcode() == dns.rcode.REFUSED
        finally:
            swarm.cleanup()


def test_service_events_refresh_at_once(upstream: str) -> None:
    """With the full re-read set to an hour, only the engine's service event can make dockdns
    notice that a service was removed."""
    with lab("swarm-", pool="10.251.0.0/16") as made:
        swarm = SwarmLab(made)
        try:
            swarm.overlay("swarm-evt")
            swarm.service("swarm-evented", ["swarm-evt"], replicas=1)
            swarm.wait_running("swarm-evented", 1)
            tasks = swarm.task_ips("swarm-evented", "swarm-evt")
            with dockdns("--swarm-refresh", "3600", "--swarm-reconcile", "3600",
                         "--upstream", upstream,
                         docker=True) as server:
                def answers() -> set[str]:
                    return addresses(ask(server.host, server.port, "tasks.swarm-evented"))
                # Startup waits for the first read: the names are there from the first query.
                assert answers() == tasks
                swarm.remove("swarm-evented")
                wait_for(lambda: not answers(), timeout=60, interval=0.25,
                         message="the removal event reaching dockdns")
        finally:
            swarm.cleanup()
