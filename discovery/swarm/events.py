"""The engine events the Swarm source follows, and what each one means for it.

One subscription per engine (``FILTERS``): ``service``, ``node`` and ``network`` events, and the
``container`` events that show a task's container starting, turning healthy or dying on this
node. Task state changes are not events in Docker's API; what shows a scale-up on a node is the
task's container (seen here on a single-node Swarm of Docker 20.10, `docker service scale` of
one more replica: ``service update`` at once, then ``container create`` (~0.17 s), ``network
connect`` of the task's overlay (~0.2 s), ``container start`` (~0.5 s); Docker's resolver starts
answering the task about 2 ms after the start event is stamped, and the manager reports it
running 20-110 ms later). The ``connect`` comes too early to answer on: the endpoint has joined,
but the Swarm executor enables its service binding (libnetwork's ``EnableService``) only once the
container's start returned, or, with a health check, once it turned healthy.

``classify`` is pure (an event dictionary in, a ``Signal`` out); ``EngineEvents`` reads the
blocking SDK stream in a daemon thread and hands each event to the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from discovery.swarm.model import GWBRIDGE

log = logging.getLogger("dockdns.swarm")

SERVICE_LABEL = "com.docker.swarm.service.id"
TASK_LABEL = "com.docker.swarm.task.id"
# The engine filters by type and action (values of one key are OR'ed, keys AND'ed), so other
# containers' exec, attach, kill ... never reach dockdns; a container filter by label would also
# drop service, node and network events (AND), so that one is applied here.
FILTERS: dict[str, list[str]] = {
    "type": ["service", "node", "network", "container"],
    "event": ["create", "update", "remove", "destroy", "connect", "disconnect", "start", "die",
              "health_status"],  # health_status matches "health_status: healthy" and the rest
}

# Signal kinds.
SERVICE = "service"  # a service was created, updated or removed: read its spec and tasks
NODE = "node"  # a node joined, left, changed state or role: read everything again
NETWORKS = "networks"  # a swarm network was created, updated or removed
ATTACHED = "attached"  # a container joined or left an overlay here: the gwbridge clients
TASK = "task"  # a task's container on this node: created, started, healthy, unhealthy, died
CONTAINER = "container"  # any other container started or died (the gwbridge clients, maybe)

# Task container actions.
CREATED, STARTED, HEALTHY, UNHEALTHY, DIED = "create", "start", "healthy", "unhealthy", "die"


@dataclass(frozen=True, slots=True)
class Signal:
    kind: str
    service: str = ""  # service ID
    task: str = ""  # task ID
    container: str = ""  # container ID
    action: str = ""
    image: str = ""  # a task container's image as its create event names it


def classify(event: Mapping[str, Any]) -> Signal | None:
    """What an engine event means for the Swarm source; None: nothing."""
    kind = str(event.get("Type") or "")
    action = str(event.get("Action") or "")
    actor = event.get("Actor") or {}
    actor_id = str(actor.get("ID") or "")
    attributes = actor.get("Attributes") or {}
    if kind == "service" and action in ("create", "update", "remove") and actor_id:
        return Signal(SERVICE, service=actor_id, action=action)
    if kind == "node" and action in ("create", "update", "remove"):
        return Signal(NODE, action=action)
    if kind == "network":
        if event.get("scope") == "swarm" and action in ("create", "update", "remove"):
            return Signal(NETWORKS, action=action)
        if action in ("connect", "disconnect") and (
                attributes.get("type") == "overlay" or attributes.get("name") == GWBRIDGE):
            return Signal(ATTACHED, container=str(attributes.get("container") or ""),
                          action=action)
        return None
    if kind != "container" or not actor_id:
        return None
    service = str(attributes.get(SERVICE_LABEL) or "")
    task = str(attributes.get(TASK_LABEL) or "")
    if action.startswith("health_status"):
        health = action.partition(":")[2].strip()
        if service and task and health in (HEALTHY, UNHEALTHY):
            return Signal(TASK, service, task, actor_id, health)
        return None
    if action not in (CREATED, STARTED, DIED):
        return None
    if service and task:
        image = str(attributes.get("image") or "") if action == CREATED else ""
        return Signal(TASK, service, task, actor_id, action, image)
    if action in (STARTED, DIED):
        return Signal(CONTAINER, container=actor_id, action=action)
    return None


class EngineEvents:
    """The engine's event stream, read in a daemon thread; ``deliver`` gets each event on the
    event loop, and ``None`` once the stream ended (the engine went, or a proxy cut it)."""

    def __init__(self, stream: Any, loop: asyncio.AbstractEventLoop,
                 deliver: Callable[[Mapping[str, Any] | None], None]) -> None:
        self._stream = stream
        self._loop = loop
        self._deliver = deliver
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="dockdns-swarm-events",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            for event in self._stream:
                if isinstance(event, Mapping):
                    self._hand(event)
        except Exception as err:  # the engine went away: the session finds out and reconnects
            if not self._stopped:
                log.debug("swarm event stream ended: %s", err)
        self._hand(None)

    def _hand(self, event: Mapping[str, Any] | None) -> None:
        if self._stopped:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us at exit
            self._loop.call_soon_threadsafe(self._deliver, event)

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(Exception):
            self._stream.close()
