"""One Docker engine as a registry source: its running containers' names, kept current by events.

A session with the engine goes: connect; read the engine's clock; subscribe to events *since that
moment* (the engine replays anything that happened after it, so nothing falls in the gap between
subscribing and listing, even though Docker flushes the stream's headers before it subscribes);
list every network and running (or paused) container; publish; then apply events. An event only
marks what it concerns as stale; a refresher on the loop re-inspects the stale containers in a
worker thread and publishes the result, so every published state was read after the event that
caused it.

What is published is a delta per container (``Registry.change``): the records and client entries
of the containers that changed, taken away and added, never the whole part. Events that arrive
together (a ``docker compose down``) become one change: a stop is published ``DEBOUNCE`` after
it, with every other that came meanwhile, and the refresher waits as long before it reads what
events marked, so that a burst of starts is inspected and published together.

When the engine goes away the last registry part stays in place (answers keep coming), and the
source reconnects with exponential backoff capped at ``MAX_BACKOFF``; the next session lists
everything again and replaces the part whole, which prunes containers that did not come back.

All state lives on the event loop; threads only talk to the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

import docker
import docker.errors

from discovery.docker.conventions import COMPAT_ALL
from discovery.docker.engine_socket import DEFAULT_ENGINE, check_unix_socket
from discovery.docker.events import EVENT_FILTERS, DockerEvent, EventPump
from discovery.docker.inspection import (
    ContainerEntries,
    Inspect,
    container_entries,
    cross_records,
    network_from_inspect,
)
from discovery.registry.model import Client, Network, Record, SourcePart
from discovery.registry.registry import Registry

log = logging.getLogger("dockdns.docker")

DEFAULT_DOCKER_HOST = DEFAULT_ENGINE
# Reconnect delays: start quick (an engine restart takes a few seconds), cap at 30 s.
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 30.0
# One API call may take this long before the engine counts as unreachable.
REQUEST_TIMEOUT = 15.0
# The event stream of an engine behind TCP can hang without an error when the host vanishes;
# a ping this often notices.
PING_INTERVAL = 10.0
_RFC3339 = re.compile(r"(?P<base>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<fraction>\d+))?"
                      r"(?P<zone>Z|[+-]\d\d:\d\d)")


# How long events are gathered into one registry change. The engine reports the events of one
# command (compose up/down of many containers) within a few milliseconds of each other; 5 ms
# merges those and stays far below the time a name may take to show (a start is answered well
# within 100 ms: this plus one inspect), while a change costs well under a millisecond anyway.
DEBOUNCE = 0.005
# Container events after which it certainly does not run ("remove": Podman's "destroy").
STOPPED_ACTIONS = frozenset({"die", "stop", "destroy", "remove"})
# How Podman's Docker-compatible API names itself in /version's Components.
PODMAN_COMPONENT = "Podman Engine"
# The domain aardvark-dns (Podman's resolver) answers every container name under as well, on
# every network with DNS (``NAME.dns.podman``); fixed in Podman 4 (libnetwork's
# DefaultPodmanDomainName).
PODMAN_DOMAIN = "dns.podman"
# The container states listed at a full sync. A paused container still runs (inspect says
# Running) and Docker's DNS keeps answering its names, but the engine's "running" status filter
# leaves it out: both states must be asked for (several values of one filter are OR'ed).
LISTED_STATES = ["running", "paused"]


def default_hosts() -> tuple[str, ...]:
    return (os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST,)


class EngineAPI(Protocol):
    """What a session asks of the engine (``docker.APIClient`` has it): the event fuzz test
    drives the same functions with an engine state of its own."""

    def networks(self) -> list[dict[str, Any]]: ...

    def containers(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]: ...

    def inspect_container(self, container: str) -> dict[str, Any]: ...


class EngineLost(Exception):
    """The engine stopped answering during a session; the message says how."""


@dataclass(frozen=True, slots=True)
class Listing:
    networks: dict[str, Network]
    containers: dict[str, Inspect]


def _settle(future: asyncio.Future[str], reason: str) -> None:
    if not future.done():
        future.set_result(reason)


def _describe(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text.splitlines()[0][:300]


class DockerSource:
    """Feeds the registry part ``docker:<host>`` from one engine.

    Readiness and metrics read the plain attributes: ``ready`` (a first full sync happened),
    ``connected``, ``error`` (why the engine is unreachable, None while connected),
    ``events_total``, ``last_sync`` (wall-clock time of the last full listing), ``last_event``.
    """

    def __init__(self, registry: Registry, host: str, include_unhealthy: bool = False,
                 compat: tuple[str, ...] = COMPAT_ALL) -> None:
        self.registry = registry
        self.compat = compat
        self.host = host
        self.name = f"docker:{host}"
        self.include_unhealthy = include_unhealthy
        self.ready = False
        self.connected = False
        self.error: str | None = None
        self.events_total = 0
        self.syncs_total = 0
        self.last_sync: float | None = None
        self.last_event: float | None = None
        # Each API call's bound; `dockdns check` shortens it to its own wait.
        self.request_timeout = REQUEST_TIMEOUT
        # Set once the first connection attempt has either synced or failed.
        self.settled = asyncio.Event()
        self._networks: dict[str, Network] = {}
        self._containers: dict[str, Inspect] = {}
        self._entries: dict[str, ContainerEntries] = {}
        self._stale_containers: set[str] = set()
        self._stale_networks = False
        # What the registry holds from this source (per container, networks, joined records),
        # and the containers whose entries may differ from it: ``_flush`` publishes the delta.
        self._published: dict[str, ContainerEntries] = {}
        self._published_networks: dict[str, Network] = {}
        self._published_cross: tuple[Record, ...] = ()
        self._dirty: set[str] = set()
        self._networks_dirty = False
        self._flush_handle: asyncio.TimerHandle | None = None
        # Published containers that take part in ``cross_records`` (a proxy, its backends, a
        # legacy link), and those of them with links: the joined records are made again only
        # when one of those changes (with links: any container, a link may name it).
        self._joined: set[str] = set()
        self._linking: set[str] = set()
        self._wake = asyncio.Event()
        self._pump: EventPump | None = None
        # Set per session from /version: Podman's own names (``NAME.dns.podman``) are added.
        self.podman = False
        self._relisted_for: frozenset[str] = frozenset()

    # --- the session loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, sync, follow events; on loss keep the registry and reconnect with backoff."""
        delay = INITIAL_BACKOFF
        while True:
            synced_before = self.syncs_total
            try:
                reason = await self._session()
            except asyncio.CancelledError:
                raise
            except (docker.errors.DockerException, EngineLost, OSError) as err:
                reason = _describe(err)
            except Exception as err:  # a bug must not end discovery for good: log it, go on
                log.exception("docker source %s failed", self.host)
                reason = _describe(err)
            was_connected = self.connected
            self.connected = False
            self.error = reason
            self.settled.set()
            if self.syncs_total > synced_before:
                delay = INITIAL_BACKOFF  # it worked for a while: come back quickly
            if was_connected:
                log.warning("docker engine %s lost (%s); keeping the last %d containers, "
                            "reconnecting", self.host, reason, len(self._containers))
            else:
                log.warning("docker engine %s unreachable (%s); retrying in %.1f s", self.host,
                            reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    def _client(self) -> docker.APIClient:
        """A client speaking the engine's API version. Blocking: call it in a thread."""
        check_unix_socket(self.host, self.request_timeout)
        return docker.APIClient(base_url=self.host, version="auto",
                                timeout=self.request_timeout)

    async def _session(self) -> str:
        """One connection, until the engine goes away; returns why it ended."""
        loop = asyncio.get_running_loop()
        api = await asyncio.to_thread(self._client)
        events_api: docker.APIClient | None = None
        tasks: list[asyncio.Task[Any]] = []
        lost: asyncio.Future[str] = loop.create_future()
        try:
            engine_now = engine_timestamp((await asyncio.to_thread(api.info))["SystemTime"])
            self.podman = is_podman(await asyncio.to_thread(api.version))
            # A client of its own for the stream, which holds its connection for good.
            events_api = await asyncio.to_thread(self._client)
            stream = await asyncio.to_thread(_subscribe, events_api, engine_now)
            # The end is reported to this session's future only: a late report from an old
            # stream must not end a newer session.
            self._pump = EventPump(stream, loop, self.on_event,
                                   lambda reason: _settle(lost, reason),
                                   f"docker-events {self.host}")
            self._pump.start()
            listing = await asyncio.to_thread(list_all, api, self.name)
            self.replace(listing)
            self.connected = True
            self.error = None
            self.ready = True
            self.syncs_total += 1
            self.last_sync = time.time()
            self.settled.set()
            log.info("docker engine %s: %d running containers on %d networks", self.host,
                     len(self._containers), len(self._networks))
            tasks = [loop.create_task(self._refresh_loop(api), name=f"docker-refresh {self.host}"),
                     loop.create_task(self._ping_loop(api), name=f"docker-ping {self.host}")]
            done, _ = await asyncio.wait([lost, *tasks], return_when=asyncio.FIRST_COMPLETED)
            finished = done.pop()
            if finished is lost:
                return lost.result()
            finished.result()  # raises what ended the task
            return "the engine stopped answering"
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            self._close_pump()
            for client in (api, events_api):
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()

    def _close_pump(self) -> None:
        if self._pump is not None:
            self._pump.close()
            self._pump = None

    def close(self) -> None:
        """Stop reading events (shutdown); the run task itself is cancelled by its owner."""
        self._close_pump()

    # --- events (on the loop) -----------------------------------------------------------------

    def on_event(self, event: DockerEvent) -> None:
        self.events_total += 1
        self.last_event = time.time()
        if event.kind == "container":
            if event.action in STOPPED_ACTIONS and event.actor in self._containers:
                # Certain without asking: it no longer runs. Applied at once, because an engine
                # that is shutting down stops its containers and then answers no inspect; a
                # restart shows up as a later start event.
                self._containers.pop(event.actor, None)
                self._entries.pop(event.actor, None)
                self._dirty.add(event.actor)
                self._flush_soon()
            self._stale_containers.add(event.actor)
        else:
            self._stale_networks = True
            container = event.attributes.get("container")
            if container:
                self._stale_containers.add(container)
            elif event.actor in self._containers:
                # Podman's connect/disconnect name the container as the actor (Docker's name
                # the network, and the container in the attributes).
                self._stale_containers.add(event.actor)
        self._wake.set()

    def take_stale(self) -> tuple[set[str], bool]:
        """What events marked stale since the last call: container IDs, and whether the
        networks must be listed again. The set holds each ID once, so it is bounded by the
        containers the engine has, however many events arrive."""
        ids, self._stale_containers = self._stale_containers, set()
        networks, self._stale_networks = self._stale_networks, False
        return ids, networks

    def return_stale(self, ids: set[str], networks: bool) -> None:
        """Put back work that could not be done (the engine went away meanwhile)."""
        self._stale_containers |= ids
        self._stale_networks |= networks

    async def _refresh_loop(self, api: EngineAPI) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(DEBOUNCE)  # what else the same command reports comes too
            self._wake.clear()
            ids, networks = self.take_stale()
            try:
                fetched = await asyncio.to_thread(fetch, api, self.name, ids, networks)
            except (docker.errors.DockerException, OSError) as err:
                # Put the work back: the next session lists everything anyway.
                self.return_stale(ids, networks)
                raise EngineLost(_describe(err)) from None
            self.apply(*fetched)
            unknown = self._unknown_networks()
            if unknown - self._relisted_for:
                # A container on a network made after the networks were listed: Podman reports
                # no event when a network is made, so list them again (once for each such set:
                # a network the listing leaves out must not make this spin).
                self._relisted_for = unknown
                self._stale_networks = True
                self._wake.set()

    def _unknown_networks(self) -> frozenset[str]:
        return frozenset(record.network for entries in self._entries.values()
                         for record in entries.records
                         if record.network is not None and record.network not in self._networks)

    def apply(self, new_networks: dict[str, Network] | None,
              containers: dict[str, Inspect | None]) -> None:
        """Apply what a refresh read (``fetch``) and publish the result."""
        if new_networks is not None and new_networks != self._networks:
            self._networks = new_networks
            # Entries depend on the networks (their drivers): make all again (a connect or
            # disconnect lists the networks too, but leaves them as they were).
            self._entries = {cid: self._entries_for(data)
                             for cid, data in self._containers.items()}
            self._dirty.update(self._entries)
            self._networks_dirty = True
        for container_id, data in containers.items():
            if data is None or not (data.get("State") or {}).get("Running"):
                self._containers.pop(container_id, None)
                self._entries.pop(container_id, None)
            else:
                self._containers[container_id] = data
                self._entries[container_id] = self._entries_for(data)
            self._dirty.add(container_id)
        self._flush()

    async def _ping_loop(self, api: docker.APIClient) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL)
            try:
                await asyncio.to_thread(api.ping)
            except (docker.errors.DockerException, OSError) as err:
                raise EngineLost(f"ping failed: {_describe(err)}") from None

    # --- state -> registry --------------------------------------------------------------------

    def _entries_for(self, data: Inspect) -> ContainerEntries:
        if not self.podman:
            return container_entries(data, self._networks, self.include_unhealthy, self.name,
                                     self.compat)
        return container_entries(data, podman_networks(self._networks), self.include_unhealthy,
                                 self.name, self.compat, (PODMAN_DOMAIN,))

    def replace(self, listing: Listing) -> None:
        """Take a full listing (a new session) as the whole state."""
        self._networks = listing.networks
        self._containers = listing.containers
        self._entries = {cid: self._entries_for(data) for cid, data in self._containers.items()}
        self._publish_all()

    def set_include_unhealthy(self, include: bool,
                              compat: tuple[str, ...] | None = None) -> None:
        compat = self.compat if compat is None else compat
        if include != self.include_unhealthy or compat != self.compat:
            self.include_unhealthy = include
            self.compat = compat
            self._entries = {cid: self._entries_for(data)
                             for cid, data in self._containers.items()}
            self._publish_all()

    def part(self) -> SourcePart:
        entries = [self._entries[cid] for cid in sorted(self._entries)]
        return SourcePart(
            networks=tuple(self._networks[name] for name in sorted(self._networks)),
            records=(*(r for e in entries for r in e.records),
                     *cross_records(entries, self._networks)),
            clients=tuple(c for e in entries for c in e.clients),
        )

    def _publish_all(self) -> None:
        """Publish after a change of everything (a listing): each container is compared."""
        self._dirty.update(self._published)
        self._dirty.update(self._entries)
        self._networks_dirty = True
        if self.name not in self.registry.sources():
            # The first publication: the part, even an empty one, shows the engine was read.
            self.registry.update(self.name, SourcePart())
        self._flush()

    def _flush_soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven without a loop (tests, commands): at once
            self._flush()
            return
        if self._flush_handle is None:
            self._flush_handle = loop.call_later(DEBOUNCE, self._flush)

    def _flush(self) -> None:
        """Publish what changed since the last publication, as one delta."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        added: list[Record] = []
        removed: list[Record] = []
        added_clients: list[Client] = []
        removed_clients: list[Client] = []
        dirty, self._dirty = self._dirty, set()
        joins = self._networks_dirty or bool(self._linking and dirty)
        for cid in dirty:
            old = self._published.get(cid)
            new = self._entries.get(cid)
            if old == new:
                continue
            if cid in self._joined or (new is not None and _joins(new)):
                joins = True
                self._joined.discard(cid)
                self._linking.discard(cid)
                if new is not None and _joins(new):
                    self._joined.add(cid)
                    if new.links:
                        self._linking.add(cid)
            if old is not None:
                removed.extend(old.records)
                removed_clients.extend(old.clients)
                del self._published[cid]
            if new is not None:
                added.extend(new.records)
                added_clients.extend(new.clients)
                self._published[cid] = new
        gone_networks: list[Network] = []
        new_networks: list[Network] = []
        if self._networks_dirty:
            self._networks_dirty = False
            published = self._published_networks
            gone_networks = [n for name, n in published.items() if self._networks.get(name) != n]
            new_networks = [n for name, n in self._networks.items() if published.get(name) != n]
            self._published_networks = dict(self._networks)
        cross = self._cross_records() if joins else self._published_cross
        if cross != self._published_cross:
            have, want = Counter(self._published_cross), Counter(cross)
            removed.extend((have - want).elements())
            added.extend((want - have).elements())
            self._published_cross = cross
        self.registry.change(
            self.name,
            added=SourcePart(tuple(new_networks), tuple(added), tuple(added_clients)),
            removed=SourcePart(tuple(gone_networks), tuple(removed), tuple(removed_clients)))

    def _cross_records(self) -> tuple[Record, ...]:
        """The records that join containers (``cross_records``), from only the containers that
        can be part of one: a proxy and its backends; with a legacy link, all (a link names
        any container)."""
        if self._linking:
            joined = [self._published[cid] for cid in sorted(self._published)]
        else:
            joined = [self._published[cid] for cid in sorted(self._joined)]
        return cross_records(joined, self._networks) if joined else ()


def _joins(entries: ContainerEntries) -> bool:
    return bool(entries.proxy or entries.proxied or entries.links)


# --- blocking engine calls (run in worker threads) ------------------------------------------


def podman_networks(networks: dict[str, Network]) -> dict[str, Network]:
    """Podman's containers name its default network "podman", which its network listing calls
    "bridge": the endpoint is looked up under both names."""
    default = networks.get("bridge")
    if default is None or not default.default_bridge or "podman" in networks:
        return networks
    return {**networks, "podman": default}


def is_podman(version: dict[str, Any]) -> bool:
    """Whether /version data is Podman's Docker-compatible API."""
    return any(str((component or {}).get("Name", "")) == PODMAN_COMPONENT
               for component in version.get("Components") or ())


def engine_timestamp(system_time: str) -> str:
    """Docker's ``SystemTime`` (RFC 3339, nanoseconds) as the ``seconds.nanoseconds`` form the
    events API takes for ``since`` (it rejects the RFC 3339 form)."""
    match = _RFC3339.fullmatch(system_time.strip())
    if match is None:
        raise EngineLost(f"unexpected engine time {system_time!r}")
    zone = match["zone"]
    if zone == "Z":
        tz = UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    moment = datetime.strptime(match["base"], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=tz)
    nanos = (match["fraction"] or "").ljust(9, "0")[:9]
    return f"{int(moment.timestamp())}.{nanos}"


def _subscribe(api: docker.APIClient, since: str) -> Any:
    """The open event stream, with events since ``since`` (the engine's own clock, read before
    the listing) replayed from the engine's buffer and later ones following live."""
    stream = api.events(since=since, filters=EVENT_FILTERS, decode=True)
    # The SDK does not check the status of a streamed response: a refused subscription would
    # read as an empty stream.
    response = getattr(stream, "_response", None)
    if response is not None and response.status_code != 200:
        stream.close()
        raise EngineLost(f"event subscription refused ({response.status_code}): "
                         f"{response.text[:200].strip()}")
    return stream


def _networks(api: EngineAPI, source: str) -> dict[str, Network]:
    found: dict[str, Network] = {}
    for data in api.networks():
        network = network_from_inspect(data, source)
        if network is not None:
            found[network.name] = network
    return found


def _inspect(api: EngineAPI, container_id: str) -> Inspect | None:
    try:
        data: Inspect = api.inspect_container(container_id)
    except docker.errors.NotFound:
        return None
    return data


def list_all(api: EngineAPI, source: str) -> Listing:
    """Every network and every running (or paused) container, inspected."""
    networks = _networks(api, source)
    containers: dict[str, Inspect] = {}
    for summary in api.containers(filters={"status": LISTED_STATES}):
        data = _inspect(api, summary["Id"])
        if data is not None:
            containers[str(data["Id"])] = data
    return Listing(networks, containers)


def fetch(api: EngineAPI, source: str, ids: Iterable[str],
          networks: bool) -> tuple[dict[str, Network] | None, dict[str, Inspect | None]]:
    fresh_networks = _networks(api, source) if networks else None
    containers: dict[str, Inspect | None] = {}
    for container_id in ids:
        data = _inspect(api, container_id)
        # Keyed by the full ID: events carry it, and inspect by a short one is not expected.
        containers[str(data["Id"]) if data is not None else container_id] = data
    return fresh_networks, containers
