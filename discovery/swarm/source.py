"""Swarm services as a registry source: one ``SwarmSource`` per Docker engine, kept current by
change.

When the engine is a Swarm manager (``docker info`` → ``Swarm.ControlAvailable``) the source knows
its swarm-scoped networks, services and their running tasks; when the engine is local (one of
``--docker-host``, whose containers this dockdns serves) and in a Swarm, also docker_gwbridge and
the containers on it, to map overlay clients (see ``discovery.swarm.model``).

What it reads, and when (``discovery.swarm.events`` says which events mean what):

* on a service's event: that service and its tasks (``/services?filters={"id":[...]}``,
  ``/tasks?filters={"service":[...]}``; the services of one burst of events in one call each);
* on a task container's events on this node: that service's tasks. A container start (no health
  check) or turning healthy counts the task at once, and a container dying drops it, without
  waiting for the manager (Docker's resolver does the same on the task's node);
* while a service converges (``model.converging``: tasks pending or starting, replicas not yet
  reached, a rolling update), its tasks again after 50 ms, doubling up to ``--swarm-refresh``,
  for up to FOLLOW_LIMIT after its last change: this is how task changes on other nodes show up,
  which send this engine no event;
* on a swarm network's event: the networks; on a container joining or leaving an overlay here,
  or one of those starting or dying: docker_gwbridge and its containers;
* everything every ``--swarm-reconcile`` seconds (60), and after each (re)subscription to the
  event stream: the safety net for events missed while the stream was down.

An idle Swarm therefore costs a constant number of calls a minute whatever its size (``docker
info`` every INFO_INTERVAL, one full read per reconcile), where re-reading every task every 2 s
used to. Each read's result is diffed (``discovery.swarm.state``) and only what changed reaches
the registry (``Registry.change``).

The SDK is blocking: reads run in worker threads (bounded by the client's timeout), the endless
event stream in a daemon thread of its own that is closed when the session ends; the event loop
alone touches the state and the registry. When the engine goes away the last part stays (names
keep answering from what was last known) and the source reconnects with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import docker.utils

from discovery.docker.engine_socket import DEFAULT_ENGINE, check_unix_socket
from discovery.registry.registry import Registry
from discovery.swarm import events as ev
from discovery.swarm.events import EngineEvents, Signal
from discovery.swarm.model import GWBRIDGE, Json, has_healthcheck, task_healthcheck
from discovery.swarm.state import Delta, SwarmState

log = logging.getLogger("dockdns.swarm")

# Each blocking API call gives up after this long, so a hung engine cannot hold a worker thread
# (and with it the daemon's exit) for longer.
API_TIMEOUT = 10.0
# Backoff between reconnection attempts: doubles from the first value up to the cap.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
# How often `docker info` is asked whether the engine is (still) a manager / in a Swarm: it is the
# heaviest call, and the role changes rarely (swarm init/join/leave, promotion).
INFO_INTERVAL = 10.0
# A converging service's first re-read after an event: a task's manager state trails its
# container's start by 20-110 ms here, so the first look comes soon, and later ones double.
FOLLOW_FIRST = 0.05
# How long a service is followed after its last change. Long enough for tasks that take minutes
# to start on other nodes (an image pull), bounded so that a service which can never converge
# (a task pending for want of a node) is not polled forever: the reconcile still sees it.
FOLLOW_LIMIT = 300.0
# Container IDs asked for in one filter at most: each adds about 70 bytes to the request line,
# and the engine takes 1 MB of request head (Go's default); past this, all containers are listed.
MAX_ID_FILTER = 1000


def connect(url: str | None) -> Any:
    """A client for ``url`` (None: DOCKER_HOST or the default socket). TLS for tcp:// engines
    comes from DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, as for the docker CLI."""
    target = url if url is not None else os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE
    check_unix_socket(target, API_TIMEOUT)
    if url is None:
        return docker.from_env(timeout=API_TIMEOUT)
    kwargs: dict[str, Any] = {}
    if url.startswith(("tcp://", "https://")):
        kwargs = {k: v for k, v in docker.utils.kwargs_from_env().items() if k == "tls"}
    return docker.DockerClient(base_url=url, timeout=API_TIMEOUT, **kwargs)


def engine_role(client: Any) -> tuple[bool, bool]:
    """(in a Swarm, a manager) from ``docker info``."""
    swarm = client.api.info().get("Swarm") or {}
    return swarm.get("LocalNodeState") == "active", bool(swarm.get("ControlAvailable"))


# --- the blocking reads (each run in a worker thread) ---------------------------------------

@dataclass(frozen=True, slots=True)
class FullRead:
    networks: list[Json]
    services: list[Json]
    tasks: list[Json]


def read_all(client: Any) -> FullRead:
    """Every swarm network, service and desired-running task."""
    api = client.api
    return FullRead(networks=api.networks(filters={"scope": "swarm"}),
                    services=api.services(),
                    tasks=api.tasks(filters={"desired-state": "running"}))


def read_services(client: Any, specs: Iterable[str], tasks: Iterable[str]) -> tuple[
        dict[str, Json | None], dict[str, list[Json]]]:
    """The specs of ``specs`` (None: gone) and the desired-running tasks of ``specs`` and
    ``tasks``: one call for the specs and one for the tasks, whatever their number."""
    api = client.api
    wanted_specs = sorted(set(specs))
    services: dict[str, Json | None] = {}
    if wanted_specs:
        listed = {str(s["ID"]): s for s in api.services(filters={"id": wanted_specs})}
        services = {sid: listed.get(sid) for sid in wanted_specs}  # "id" matches prefixes
    wanted = sorted((set(tasks) | set(wanted_specs)) - {s for s, v in services.items() if not v})
    found: dict[str, list[Json]] = {sid: [] for sid in wanted}
    for attempt in range(2):
        if not wanted:
            break
        try:
            listed_tasks = api.tasks(filters={"service": wanted, "desired-state": "running"})
        except docker.errors.NotFound:
            # The engine refuses the whole filter when one of its services is gone: find which,
            # and ask again for the others.
            if attempt:
                raise
            present = {str(s["ID"]) for s in api.services(filters={"id": wanted})}
            for sid in set(wanted) - present:
                services[sid] = None
                found.pop(sid, None)
            wanted = sorted(present & set(wanted))
            continue
        for task in listed_tasks:
            sid = str(task.get("ServiceID", ""))
            if sid in found:
                found[sid].append(task)
        break
    return services, found


def read_clients(client: Any) -> tuple[Json | None, list[Json]]:
    """docker_gwbridge (None before the first overlay container on this node) and the running
    containers attached to it."""
    api = client.api
    try:
        gwbridge = api.inspect_network(GWBRIDGE)
    except docker.errors.NotFound:
        return None, []
    # A container's gwbridge endpoint is not among its networks (no "network" filter finds it):
    # ask for the containers gwbridge names, or all of them when that is many.
    ids = sorted(str(c) for c in gwbridge.get("Containers") or {})
    if not ids:
        return gwbridge, []
    if len(ids) > MAX_ID_FILTER:
        return gwbridge, api.containers()
    return gwbridge, api.containers(filters={"id": ids})


def read_images(client: Any, images: Iterable[str]) -> dict[str, Json | None]:
    """``docker image inspect`` of each image (None: not found by that reference)."""
    found: dict[str, Json | None] = {}
    for image in images:
        try:
            found[image] = client.api.inspect_image(image)
        except docker.errors.NotFound:
            found[image] = None
    return found


def read_health(client: Any, containers: Iterable[str]) -> dict[str, bool | None]:
    """Container ID -> whether it has a health check (None: it is gone)."""
    found: dict[str, bool | None] = {}
    for container in containers:
        try:
            found[container] = has_healthcheck(client.api.inspect_container(container))
        except docker.errors.NotFound:
            found[container] = None
    return found


# --- what events asked for ------------------------------------------------------------------

@dataclass(slots=True)
class Pending:
    """What the events since the last read ask to be read."""

    full: bool = False
    role: bool = False
    networks: bool = False
    clients: bool = False
    specs: set[str] = field(default_factory=set)  # services: spec and tasks
    tasks: set[str] = field(default_factory=set)  # services: tasks
    # Task containers just created: container -> (service, task, image); whether each has a
    # health check comes from its task's spec and its image, which answer before it starts.
    images: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    health: set[str] = field(default_factory=set)  # containers to inspect for a health check
    # Task containers started before their health check was known: container -> (service, task).
    started: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.full or self.role or self.networks or self.clients or self.specs
                    or self.tasks or self.images or self.health or self.started)


@dataclass(slots=True)
class Follow:
    due: float  # monotonic time of the next read
    delay: float  # the wait after that one
    since: float  # the service's last change or event


class SwarmSource:
    """Keeps one registry part (``swarm:<engine>``) current while the daemon runs.

    Either a local engine (``--docker-host``, or the default one): services when it is a manager,
    and the overlay clients of its docker_gwbridge when it is in a Swarm. Or the managers of
    ``--swarm-manager``, tried in turn until one answers: services only, since another node's
    gwbridge addresses mean nothing here (every node numbers its own gwbridge alike).
    """

    def __init__(self, registry: Registry, urls: Sequence[str | None], refresh: float,
                 local: bool, reconcile: float = 60.0) -> None:
        if not urls:
            raise ValueError("a Swarm source needs at least one engine")
        self.registry = registry
        self.urls = list(urls)
        self.refresh = refresh  # a converging service's tasks are re-read at most this often
        self.reconcile = reconcile  # everything is re-read this often
        self.local = local
        first = self.urls[0] or os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE
        self.name = f"swarm:{first}" if local else "swarm:managers"
        self._index = 0  # which of ``urls`` the next connection tries
        self._wake = asyncio.Event()
        self._synced = False  # whether the current connection produced a part yet
        self.error: str | None = None  # why the last attempt failed; None once a read worked
        # Set after the first read, or the first failure: startup waits (a bounded time) for it so
        # that service names answer from the first query when the engine is there.
        self.settled = asyncio.Event()
        # Kept across sessions: a reconnection diffs against what the registry holds.
        self.state = SwarmState()
        self._pending = Pending()
        self._follow: dict[str, Follow] = {}
        self._health: dict[str, bool] = {}  # task container ID -> has a health check
        self._overlay: set[str] = set()  # containers seen joining an overlay here
        self._sequence = 0  # events delivered so far (sightings older than a read may go)
        self._events: EngineEvents | None = None
        self._manager = False
        self._clients_wanted = False  # a local engine in a Swarm: map its overlay clients

    @property
    def url(self) -> str | None:
        return self.urls[self._index]

    async def run(self) -> None:
        """Read, publish, wait; reconnect with backoff whenever the engine fails."""
        delay = BACKOFF_FIRST
        while True:
            self._synced = False
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.error = _describe(err)
                self.settled.set()
                if self._synced:  # it worked until now: start the backoff again
                    delay = BACKOFF_FIRST
                known = self.registry.part(self.name) is not None
                log.warning("%s: engine unavailable (%s); %s, retrying in %.1f s", self.name,
                            _describe(err), "keeping the last known services" if known
                            else "no services yet", delay)
                if not isinstance(err, ENGINE_ERRORS):
                    log.debug("unexpected error reading %s", self.name, exc_info=err)
                self._index = (self._index + 1) % len(self.urls)  # the next manager, if any
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    # --- one connection ----------------------------------------------------------------------

    async def _session(self) -> None:
        client = await asyncio.to_thread(connect, self.url)
        try:
            in_swarm, manager = await asyncio.to_thread(engine_role, client)
            if not self.local and not manager:
                raise NotAManager(f"{self.url} is not a Swarm manager")
            log.info("%s: %s is %s", self.name, self.url or "the default engine",
                     "a Swarm manager" if manager else
                     "a Swarm worker" if in_swarm else "not in a Swarm")
            await self._serve(client, in_swarm, manager)
        finally:
            self._unwatch()
            with contextlib.suppress(Exception):
                client.close()

    async def _serve(self, client: Any, in_swarm: bool, manager: bool) -> None:
        role_checked = time.monotonic()
        reconciled = -float("inf")
        while True:
            now = time.monotonic()
            if self._pending.role or now - role_checked >= INFO_INTERVAL:
                self._pending.role = False
                was = (in_swarm, manager)
                in_swarm, manager = await asyncio.to_thread(engine_role, client)
                role_checked = time.monotonic()
                if not self.local and not manager:
                    raise NotAManager(f"{self.url} is no longer a Swarm manager")
                if (in_swarm, manager) != was:
                    log.info("%s: now %s", self.name, "a Swarm manager" if manager else
                             "a Swarm worker" if in_swarm else "not in a Swarm")
                    self._pending.full = True
            self._manager = manager
            self._clients_wanted = self.local and in_swarm
            if manager or in_swarm:
                if self._events is None or not self._events.alive:
                    # (Re)subscribe first, then read everything: nothing falls in the gap, and
                    # whatever happened while the stream was down is found.
                    self._unwatch()
                    self._events = await self._watch(client)
                    self._pending.full = True
            else:
                self._unwatch()
            if self.registry.part(self.name) is None:
                self._pending.full = True
            if time.monotonic() - reconciled >= self.reconcile:
                self._pending.full = True
            due = {sid for sid, f in self._follow.items() if f.due <= time.monotonic()}
            try:
                if self._pending.full:
                    reconciled = time.monotonic()
                await self._read(client, due)
            except docker.errors.APIError as err:
                self._pending.full = True  # what this read was for is read again, all of it
                if err.status_code != 503:
                    raise
                role_checked = 0.0  # "not a swarm manager": demoted or left; ask again
                await asyncio.sleep(BACKOFF_FIRST)  # not at once: it may be a passing state
            except Exception:
                self._pending.full = True
                raise
            self._synced = True
            self.error = None
            self.settled.set()
            await self._sleep(min(role_checked + INFO_INTERVAL, reconciled + self.reconcile))

    async def _sleep(self, until: float) -> None:
        """Until an event asks for something, a followed service is due, or ``until``."""
        if self._pending:
            return
        wake = min([until, *(f.due for f in self._follow.values())])
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.0, wake - time.monotonic()))

    async def _read(self, client: Any, due: set[str]) -> None:
        """Read what the pending events ask for and the followed services ``due`` now, and hand
        the registry what changed. Each change is published as soon as it is computed: an
        event handled meanwhile (``_on_task``) publishes its own, and the registry must get them
        in the order the state made them."""
        take, self._pending = self._pending, Pending()
        started = self._sequence
        changed: set[str] = set()
        if take.full:
            if self._manager:
                full = await asyncio.to_thread(read_all, client)
                changed |= self._publish(self.state.replace_all(
                    full.networks, full.services, full.tasks, started))
            else:
                changed |= self._publish(self.state.clear_services())
            self._forget_containers()
        elif self._manager:
            if take.networks:
                networks = await asyncio.to_thread(client.api.networks,
                                                   filters={"scope": "swarm"})
                changed |= self._publish(self.state.set_networks(networks))
            tasks = take.tasks | due
            specs = take.specs | (tasks - set(self.state.services))
            if specs or tasks:
                services, listed = await asyncio.to_thread(read_services, client, specs, tasks)
                changed |= self._publish(self.state.set_services(services, listed, started))
        # After the tasks: a new container's task is in them (its spec says half of whether the
        # container has a health check).
        if take.images or take.health or take.started:
            await self._learn_health(client, take, started)
        if self._clients_wanted and (take.full or take.clients):
            gwbridge, containers = await asyncio.to_thread(read_clients, client)
            self._publish(self.state.set_clients(gwbridge, containers))
        elif not self._clients_wanted:
            self._publish(self.state.set_clients(None, ()))
        if self.registry.part(self.name) is None:
            self._publish(Delta())  # the first read: the (maybe empty) part is there
        self._track(take.specs | take.tasks, due, changed)

    async def _learn_health(self, client: Any, take: Pending, started: int) -> None:
        """Whether new task containers have a health check, so that each one's start counts it
        at once (``_on_task``), without an engine call between the start and the answer; then
        the starts that came before it was known."""
        if take.images:
            images = await asyncio.to_thread(
                read_images, client, {image for _, _, image in take.images.values()})
            for container, (service, task_id, image) in take.images.items():
                task = self.state.task(service, task_id)
                data = images.get(image)
                if task is not None and data is not None:
                    self._health[container] = task_healthcheck(task, data)
                elif container not in self._health:
                    take.health.add(container)  # the task or its image unknown: ask the container
        unknown = (take.health | set(take.started)) - set(self._health)
        if unknown:
            for container, checked in (await asyncio.to_thread(read_health, client,
                                                               unknown)).items():
                if checked is not None:
                    self._health[container] = checked
        for container, (service, task_id) in take.started.items():
            if self._health.get(container) is False:
                self._publish(self.state.task_seen(service, task_id, True, started))

    def _track(self, kicked: set[str], due: set[str], changed: Iterable[str]) -> None:
        """Follow the services still converging: soon after an event, then less and less often,
        until FOLLOW_LIMIT has passed without a change."""
        now = time.monotonic()
        cap = max(self.refresh, FOLLOW_FIRST)
        changed = set(changed)
        for sid in kicked | due | changed:
            if not self.state.converging(sid):
                self._follow.pop(sid, None)
                continue
            follow = self._follow.get(sid)
            if follow is None or sid in kicked:
                self._follow[sid] = Follow(now + FOLLOW_FIRST, min(FOLLOW_FIRST * 2, cap), now)
                continue
            if sid in changed:
                follow.since = now
            if sid in due:
                follow.due = now + follow.delay
                follow.delay = min(follow.delay * 2, cap)
        for sid, follow in list(self._follow.items()):
            if now - follow.since > FOLLOW_LIMIT or sid not in self.state.services:
                del self._follow[sid]

    def _publish(self, delta: Delta) -> frozenset[str]:
        """Give the registry one change (the whole part, the first time); the services it
        touched."""
        if self.registry.part(self.name) is None:
            self.registry.update(self.name, self.state.part())
        elif not delta or not self.registry.change(self.name, delta.added, delta.removed):
            return delta.changed
        part = self.registry.part(self.name)
        if part is not None:
            log.debug("%s: %d records, %d overlay client addresses", self.name,
                      len(part.records), len(part.clients))
        return delta.changed

    def _forget_containers(self) -> None:
        """After a full read: health-check knowledge only for containers of known tasks."""
        keep = self.state.task_containers()
        self._health = {c: v for c, v in self._health.items() if c in keep}
        self._overlay &= set(self.state.bridged) | keep

    # --- events ------------------------------------------------------------------------------

    async def _watch(self, client: Any) -> EngineEvents:
        stream = await asyncio.to_thread(client.api.events, filters=ev.FILTERS, decode=True)
        events = EngineEvents(stream, asyncio.get_running_loop(), self._deliver)
        events.start()
        return events

    def _unwatch(self) -> None:
        if self._events is not None:
            self._events.stop()
            self._events = None

    def _deliver(self, event: Mapping[str, Any] | None) -> None:
        """An event from the stream, on the loop (None: the stream ended)."""
        self._wake.set()
        if event is None:
            return  # the session sees the thread gone, resubscribes and reads everything
        signal = ev.classify(event)
        if signal is not None:
            self._sequence += 1
            self._on(signal)

    def _on(self, signal: Signal) -> None:
        pending = self._pending
        if signal.kind == ev.SERVICE:
            pending.specs.add(signal.service)
        elif signal.kind == ev.NODE:
            pending.full = pending.role = True
        elif signal.kind == ev.NETWORKS:
            pending.networks = True
        elif signal.kind == ev.ATTACHED:
            pending.clients = True
            if signal.container:
                (self._overlay.add if signal.action == "connect" else self._overlay.discard)(
                    signal.container)
        elif signal.kind == ev.CONTAINER:
            if signal.container in self._overlay or signal.container in self.state.bridged:
                pending.clients = True
            if signal.action == ev.DIED:
                self._overlay.discard(signal.container)
        elif signal.kind == ev.TASK:
            self._on_task(signal)

    def _on_task(self, signal: Signal) -> None:
        pending = self._pending
        pending.tasks.add(signal.service)
        action, container = signal.action, signal.container
        if action == ev.CREATED:
            # Known before it starts: the start then costs nothing.
            if signal.image:
                pending.images[container] = (signal.service, signal.task, signal.image)
            else:
                pending.health.add(container)
            return
        if action in (ev.STARTED, ev.DIED):
            pending.clients = True
        up: bool | None = None
        if action == ev.STARTED:
            checked = self._health.get(container)
            if checked is None:
                pending.started[container] = (signal.service, signal.task)
            elif not checked:
                up = True
        elif action == ev.HEALTHY:
            up = True
        elif action == ev.DIED:
            up = False
            self._health.pop(container, None)
        if up is not None:
            self._publish(self.state.task_seen(signal.service, signal.task, up,
                                               self._sequence))


class NotAManager(Exception):
    """A --swarm-manager engine that cannot list services: the next one is tried."""


ENGINE_ERRORS: tuple[type[BaseException], ...] = (docker.errors.DockerException, OSError,
                                                  NotAManager)


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]
