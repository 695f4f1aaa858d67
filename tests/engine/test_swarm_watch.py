"""The Swarm source by change, on the test engine's single-node Swarm, with dockdns reaching the
engine through a counting proxy (tests/support/engine_proxy.py) that the tests can also cut or
silence, so the shared engine itself is never disturbed:

* a scale up and a scale down are followed from events alone (the full re-read is an hour away);
* only the changed service's tasks are read, counted at the proxy;
* the engine vanishing leaves the last answers serving, and changes made meanwhile (a scale-up,
  a removal, a new service) are all found once it is back;
* with the event stream silenced, the periodic full re-read alone brings answers up to date.

Answers are asked from loopback (the host sees every network); the only upstream refuses
everything, so nothing leaves the machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import dns.rcode
import pytest

from tests.support.daemon import RunningDaemon, dockdns
from tests.support.engine import wait_for
from tests.support.engine_proxy import EngineProxy
from tests.support.net import addresses, ask
from tests.support.swarm import CHANGE_SECONDS, SwarmLab, answers, follows, overlay_lab

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

POOL = "10.251.0.0/16"
NETWORK = "swarm-w-net"
NEVER = "3600"  # a full re-read an hour away: within a test only events can bring changes


@pytest.fixture
def swarm() -> Iterator[SwarmLab]:
    with overlay_lab("swarm-", POOL, NETWORK) as made:
        yield made


def gone(server: RunningDaemon, name: str) -> bool:
    reply = ask(server.host, server.port, name)
    return not addresses(reply) and reply.rcode() != dns.rcode.NOERROR


def full_reads(proxy: EngineProxy, since: float) -> int:
    """Task listings of the whole cluster (no service filter) since ``since``."""
    return sum(1 for r in proxy.requests(since)
               if r.path == "/tasks" and "service" not in r.filters)


def test_scale_up_and_down_follow_the_events(proxy: EngineProxy, swarm: SwarmLab,
                                             upstream: str) -> None:
    swarm.service("swarm-w-scale", [NETWORK], replicas=1)
    swarm.wait_running("swarm-w-scale", 1)
    with dockdns("--docker-host", proxy.url, "--swarm-reconcile", NEVER, "--upstream", upstream,
                 docker=True) as server:
        one = follows(server, swarm, "swarm-w-scale", 1, NETWORK)
        started = time.monotonic()
        swarm.scale("swarm-w-scale", 3)
        three = follows(server, swarm, "swarm-w-scale", 3, NETWORK)
        assert one < three
        swarm.scale("swarm-w-scale", 1)
        last = follows(server, swarm, "swarm-w-scale", 1, NETWORK)
        assert last < three
        assert answers(server, "swarm-w-scale") == {swarm.vip("swarm-w-scale", NETWORK)}
        # No full re-read did it: the events and the reads they asked for did.
        assert full_reads(proxy, started) == 0


def test_only_the_changed_services_tasks_are_read(proxy: EngineProxy, swarm: SwarmLab,
                                                  upstream: str) -> None:
    changed = swarm.service("swarm-w-changed", [NETWORK], replicas=1)
    swarm.service("swarm-w-still", [NETWORK], replicas=2)
    swarm.wait_running("swarm-w-changed", 1)
    swarm.wait_running("swarm-w-still", 2)
    with dockdns("--docker-host", proxy.url, "--swarm-reconcile", NEVER, "--upstream", upstream,
                 docker=True) as server:
        follows(server, swarm, "swarm-w-changed", 1, NETWORK)
        follows(server, swarm, "swarm-w-still", 2, NETWORK)
        started = time.monotonic()
        swarm.scale("swarm-w-changed", 2)
        follows(server, swarm, "swarm-w-changed", 2, NETWORK)
        reads = [r for r in proxy.requests(started) if r.path in ("/tasks", "/services")]
        assert reads, "no task was read at all"
        for request in reads:
            assert request.filters.get("service", request.filters.get("id")) == [changed.id], (
                request)
        assert any(r.path == "/tasks" for r in reads)


def test_changes_while_the_engine_is_gone_are_found_on_its_return(
        proxy: EngineProxy, swarm: SwarmLab, upstream: str) -> None:
    swarm.service("swarm-w-grow", [NETWORK], replicas=1)
    swarm.service("swarm-w-drop", [NETWORK], replicas=1)
    swarm.wait_running("swarm-w-grow", 1)
    swarm.wait_running("swarm-w-drop", 1)
    with dockdns("--docker-host", proxy.url, "--swarm-reconcile", NEVER, "--upstream", upstream,
                 docker=True) as server:
        grow = follows(server, swarm, "swarm-w-grow", 1, NETWORK)
        drop = follows(server, swarm, "swarm-w-drop", 1, NETWORK)

        proxy.stop()  # the engine vanishes, event stream and all
        wait_for(lambda: "engine unavailable" in server.log(), timeout=60,
                 message="dockdns noticing the engine is gone")
        swarm.scale("swarm-w-grow", 2)
        swarm.remove("swarm-w-drop")
        swarm.service("swarm-w-new", [NETWORK], replicas=1)
        swarm.wait_running("swarm-w-grow", 2)
        grown = swarm.task_ips("swarm-w-grow", NETWORK)
        swarm.wait_running("swarm-w-new", 1)
        # What dockdns knew keeps answering while the engine is away.
        assert answers(server, "tasks.swarm-w-grow") == grow
        assert answers(server, "tasks.swarm-w-drop") == drop
        assert gone(server, "tasks.swarm-w-new")

        proxy.start()  # and comes back: the missed events are made up for by a full read
        wait_for(lambda: answers(server, "tasks.swarm-w-grow") == grown,
                 timeout=CHANGE_SECONDS, interval=0.2, message="the scale-up found")
        wait_for(lambda: gone(server, "tasks.swarm-w-drop") and gone(server, "swarm-w-drop"),
                 timeout=CHANGE_SECONDS, interval=0.2, message="the removal found")
        follows(server, swarm, "swarm-w-new", 1, NETWORK)


def test_a_silent_event_stream_is_made_up_for_by_the_reconcile(
        proxy: EngineProxy, swarm: SwarmLab, upstream: str) -> None:
    swarm.service("swarm-w-quiet", [NETWORK], replicas=1)
    swarm.wait_running("swarm-w-quiet", 1)
    with dockdns("--docker-host", proxy.url, "--swarm-reconcile", "3", "--upstream", upstream,
                 docker=True) as server:
        follows(server, swarm, "swarm-w-quiet", 1, NETWORK)
        proxy.mute_events()  # the stream stays open and says nothing: every event is missed
        started = time.monotonic()
        swarm.scale("swarm-w-quiet", 2)
        follows(server, swarm, "swarm-w-quiet", 2, NETWORK)
        tasks = [r for r in proxy.requests(started) if r.path == "/tasks"]
        assert tasks and "service" not in tasks[0].filters, tasks[:1]
        # Without events, nothing but a full re-read can have started reading this service
        # (after one, a service found converging is followed by reads of its own).
