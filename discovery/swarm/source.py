"""Swarm services as a registry source: one ``SwarmSource`` per Docker engine.

When the engine is a Swarm manager (``docker info`` → ``Swarm.ControlAvailable``) the source reads
its swarm-scoped networks, services and running tasks; when the engine is local (one of
``--docker-host``, whose containers this dockdns serves) and in a Swarm, it also reads
docker_gwbridge and the running containers, to map overlay clients (see
``discovery.swarm.model``). Each refresh becomes one ``SourcePart``.

Timing: service events (create, update, remove) wake the source at once; tasks have no engine
events, so the source also re-reads every ``--swarm-refresh`` seconds. The registry rebuilds only
when the part differs from the last one. The SDK is blocking: reads run in a worker thread
(bounded by the client's timeout), the endless event stream in a daemon thread of its own that is
closed when the source stops; the event loop alone touches the registry.

When the engine goes away the last part stays (names keep answering from what was last known) and
the source reconnects with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import docker
import docker.errors
import docker.utils

from discovery.docker.engine_socket import DEFAULT_ENGINE, check_unix_socket
from discovery.registry.registry import Registry
from discovery.swarm.model import GWBRIDGE, EngineRead, build_part

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


def read_engine(client: Any, manager: bool, local: bool) -> EngineRead:
    """One refresh's blocking reads (run in a worker thread)."""
    api = client.api
    networks: list[Any] = []
    services: list[Any] = []
    tasks: list[Any] = []
    if manager:
        networks = api.networks(filters={"scope": "swarm"})
        services = api.services()
        tasks = api.tasks(filters={"desired-state": "running"})
    gwbridge = None
    containers: list[Any] = []
    if local:
        try:
            gwbridge = api.inspect_network(GWBRIDGE)
        except docker.errors.NotFound:
            gwbridge = None  # created with the first overlay container on this node
        if gwbridge is not None:
            containers = api.containers()
    return EngineRead(networks=networks, services=services, tasks=tasks, gwbridge=gwbridge,
                      containers=containers)


class ServiceEvents:
    """The engine's service events, read in a daemon thread; each one sets ``wake``."""

    def __init__(self, stream: Any, loop: asyncio.AbstractEventLoop,
                 wake: asyncio.Event) -> None:
        self._stream = stream
        self._loop = loop
        self._wake = wake
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
            for _event in self._stream:
                self._notify()
        except Exception as err:  # the engine went away: the next read finds out and reconnects
            if not self._stopped:
                log.debug("service event stream ended: %s", err)
        self._notify()

    def _notify(self) -> None:
        if self._stopped:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us at exit
            self._loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(Exception):
            self._stream.close()


class SwarmSource:
    """Keeps one registry part (``swarm:<engine>``) current while the daemon runs.

    Either a local engine (``--docker-host``, or the default one): services when it is a manager,
    and the overlay clients of its docker_gwbridge when it is in a Swarm. Or the managers of
    ``--swarm-manager``, tried in turn until one answers: services only, since another node's
    gwbridge addresses mean nothing here (every node numbers its own gwbridge alike).
    """

    def __init__(self, registry: Registry, urls: Sequence[str | None], refresh: float,
                 local: bool) -> None:
        if not urls:
            raise ValueError("a Swarm source needs at least one engine")
        self.registry = registry
        self.urls = list(urls)
        self.refresh = refresh
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

    async def _session(self) -> None:
        client = await asyncio.to_thread(connect, self.url)
        events: ServiceEvents | None = None
        try:
            in_swarm, manager = await asyncio.to_thread(engine_role, client)
            role_checked = time.monotonic()
            if not self.local and not manager:
                raise NotAManager(f"{self.url} is not a Swarm manager")
            log.info("%s: %s is %s", self.name, self.url or "the default engine",
                     "a Swarm manager" if manager else
                     "a Swarm worker" if in_swarm else "not in a Swarm")
            while True:
                if time.monotonic() - role_checked >= INFO_INTERVAL:
                    was = (in_swarm, manager)
                    in_swarm, manager = await asyncio.to_thread(engine_role, client)
                    role_checked = time.monotonic()
                    if not self.local and not manager:
                        raise NotAManager(f"{self.url} is no longer a Swarm manager")
                    if (in_swarm, manager) != was:
                        log.info("%s: now %s", self.name, "a Swarm manager" if manager else
                                 "a Swarm worker" if in_swarm else "not in a Swarm")
                if manager and (events is None or not events.alive):
                    # (Re)subscribe: a stream can end while the engine stays (a proxy's timeout).
                    if events is not None:
                        events.stop()
                    events = await self._watch(client)
                elif not manager and events is not None:
                    events.stop()
                    events = None
                self._wake.clear()
                try:
                    read = await asyncio.to_thread(read_engine, client, manager,
                                                   self.local and in_swarm)
                except docker.errors.APIError as err:
                    if err.status_code != 503:
                        raise
                    read = None
                    role_checked = 0.0  # "not a swarm manager": demoted or left; ask again
                if read is not None:
                    part = build_part(read)
                    if self.registry.update(self.name, part):
                        log.info("%s: %d records, %d overlay client addresses", self.name,
                                 len(part.records), len(part.clients))
                    self._synced = True
                    self.error = None
                    self.settled.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.refresh)
        finally:
            if events is not None:
                events.stop()
            with contextlib.suppress(Exception):
                client.close()

    async def _watch(self, client: Any) -> ServiceEvents:
        stream = await asyncio.to_thread(client.api.events, filters={"type": "service"},
                                         decode=True)
        events = ServiceEvents(stream, asyncio.get_running_loop(), self._wake)
        events.start()
        return events


class NotAManager(Exception):
    """A --swarm-manager engine that cannot list services: the next one is tried."""


ENGINE_ERRORS: tuple[type[BaseException], ...] = (docker.errors.DockerException, OSError,
                                                  NotAManager)


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:200]
