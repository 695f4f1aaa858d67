"""The engine events the Swarm source follows, shaped as Docker 20.10 sends them (captured on this
machine's single-node Swarm during `docker service scale`): each classified, the rest ignored;
and the event thread handing events to the loop, then None when the stream ends."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from discovery.swarm import events as ev
from discovery.swarm.events import EngineEvents, Signal, classify

SERVICE_ID = "gpqz0uwhcuevumyitkfylveid"
TASK_ID = "ygobgf7wxo60iy1iqjwc3s5ou"
CONTAINER = "18abad57717d4f63e68fcfcab2d93fb4aab8575e1f2b1426ed97bffbb6a29b45"
TASK_LABELS = {"com.docker.swarm.node.id": "qgausgxkhlacbld0tknia5ftb",
               "com.docker.swarm.service.id": SERVICE_ID,
               "com.docker.swarm.service.name": "swarm-e1",
               "com.docker.swarm.task": "", "com.docker.swarm.task.id": TASK_ID,
               "com.docker.swarm.task.name": f"swarm-e1.2.{TASK_ID}", "name": "swarm-e1.2.x"}


def event(kind: str, action: str, actor: str, scope: str = "local",
          **attributes: str) -> dict[str, Any]:
    return {"Type": kind, "Action": action, "scope": scope,
            "Actor": {"ID": actor, "Attributes": attributes}}


def test_a_scale_up_as_the_engine_reports_it() -> None:
    assert classify(event("service", "update", SERVICE_ID, "swarm", name="swarm-e1",
                          **{"replicas.new": "2", "replicas.old": "1"})) == Signal(
        ev.SERVICE, service=SERVICE_ID, action="update")
    assert classify(event("container", "create", CONTAINER, image="sha256:1d2e",
                          **TASK_LABELS)) == Signal(
        ev.TASK, SERVICE_ID, TASK_ID, CONTAINER, ev.CREATED, image="sha256:1d2e")
    assert classify(event("network", "connect", "jxr0na9onwgrw6dqyr8okztuw",
                          container=CONTAINER, name="swarm-exp", type="overlay")) == Signal(
        ev.ATTACHED, container=CONTAINER, action="connect")
    # Only a create names the image (the health check's other half).
    assert classify(event("container", "start", CONTAINER, image="sha256:1d2e",
                          **TASK_LABELS)) == Signal(
        ev.TASK, SERVICE_ID, TASK_ID, CONTAINER, ev.STARTED)


def test_task_health_and_death() -> None:
    healthy = classify(event("container", "health_status: healthy", CONTAINER, **TASK_LABELS))
    assert healthy == Signal(ev.TASK, SERVICE_ID, TASK_ID, CONTAINER, ev.HEALTHY)
    unhealthy = classify(event("container", "health_status: unhealthy", CONTAINER,
                               **TASK_LABELS))
    assert unhealthy is not None and unhealthy.action == ev.UNHEALTHY
    assert classify(event("container", "health_status: starting", CONTAINER,
                          **TASK_LABELS)) is None
    died = classify(event("container", "die", CONTAINER, exitCode="137", **TASK_LABELS))
    assert died == Signal(ev.TASK, SERVICE_ID, TASK_ID, CONTAINER, ev.DIED)


def test_other_events() -> None:
    assert classify(event("node", "update", "qgaus", "swarm")) == Signal(ev.NODE,
                                                                         action="update")
    assert classify(event("network", "create", "n1", "swarm", name="ovl",
                          type="overlay")) == Signal(ev.NETWORKS, action="create")
    # A local bridge's connect is not an overlay client's; a plain container's start might be.
    assert classify(event("network", "connect", "b1", container="c1", name="mynet",
                          type="bridge")) is None
    assert classify(event("network", "disconnect", "g1", container="c1",
                          name="docker_gwbridge", type="bridge")) == Signal(
        ev.ATTACHED, container="c1", action="disconnect")
    assert classify(event("container", "start", "c2", name="web")) == Signal(
        ev.CONTAINER, container="c2", action="start")
    for ignored in (event("container", "create", "c2", name="web"),
                    event("container", "exec_start: sh", "c2"),
                    event("container", "destroy", CONTAINER, **TASK_LABELS),
                    event("image", "pull", "busybox"), event("service", "update", ""),
                    event("network", "create", "b2", name="mynet", type="bridge")):
        assert classify(ignored) is None, ignored
    assert classify({}) is None


def test_events_reach_the_loop_then_the_end_of_the_stream() -> None:
    async def main() -> list[Mapping[str, Any] | None]:
        got: list[Mapping[str, Any] | None] = []
        done = asyncio.Event()

        def deliver(item: Mapping[str, Any] | None) -> None:
            got.append(item)
            if item is None:
                done.set()
        # The SDK's stream is an iterator of decoded events; this one ends after two (and a
        # stray non-event, which is skipped).
        events = EngineEvents(iter([{"Type": "service"}, "junk", {"Type": "node"}]),
                              asyncio.get_running_loop(), deliver)
        events.start()
        await asyncio.wait_for(done.wait(), 10)
        for _ in range(1000):
            if not events.alive:
                break
            await asyncio.sleep(0.01)
        assert not events.alive  # the stream ended: the session resubscribes
        events.stop()
        return got

    assert asyncio.run(main()) == [{"Type": "service"}, {"Type": "node"}, None]


def test_a_stopped_reader_delivers_nothing_more() -> None:
    async def main() -> list[Mapping[str, Any] | None]:
        got: list[Mapping[str, Any] | None] = []
        events = EngineEvents(iter([{"Type": "service"}]), asyncio.get_running_loop(),
                              got.append)
        events.stop()
        events.start()
        for _ in range(1000):
            if not events.alive:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        return got

    assert asyncio.run(main()) == []
