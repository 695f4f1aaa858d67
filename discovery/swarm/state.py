"""What a Swarm source knows of one engine between reads, and the registry change each read makes.

Pure: API objects in, ``Delta``s out; no I/O. The source reads only what changed (one service's
tasks, the networks, the gwbridge clients) and hands it here; each call recomputes only the
records of the services it names and returns what to add and remove, which the source gives the
registry with ``Registry.change``. ``part()`` is the whole contribution, always equal (as a
multiset) to ``build_part`` of everything known at once: the unit tests hold the two to that.

``local`` is what this node's engine said of task containers (task ID -> up), which beats the
manager's word (see ``discovery.swarm.model``). Each entry carries the sequence number of the
event that set it, so that a read which began before that event cannot drop it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from discovery.registry.model import Client, Network, Record, SourcePart
from discovery.swarm.model import (
    RUNNING,
    TERMINAL,
    Json,
    converging,
    gwbridge_network,
    network_index,
    overlay_clients,
    service_records,
    swarm_networks,
)

T = TypeVar("T")
NOTHING = SourcePart()


@dataclass(frozen=True, slots=True)
class Delta:
    """Networks, records and clients to add to and remove from the source's registry part."""

    added: SourcePart = NOTHING
    removed: SourcePart = NOTHING
    # Services whose tasks changed (IDs, states) or that came or went: the source follows the
    # ones still converging.
    changed: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return any((self.added.networks, self.added.records, self.added.clients,
                    self.removed.networks, self.removed.records, self.removed.clients))

    def __add__(self, later: Delta) -> Delta:
        """This delta, then ``later``, as one: what ``later`` removes of what this one added
        cancels out (the registry applies removals before additions)."""
        added: list[tuple[Any, ...]] = []
        removed: list[tuple[Any, ...]] = []
        for kind in ("networks", "records", "clients"):
            mine_added = getattr(self.added, kind)
            later_removed = getattr(later.removed, kind)
            cancel = Counter(mine_added) & Counter(later_removed)
            added.append(_less(mine_added, cancel) + getattr(later.added, kind))
            removed.append(getattr(self.removed, kind) + _less(later_removed, cancel))
        return Delta(SourcePart(*added), SourcePart(*removed), self.changed | later.changed)


def _less(items: tuple[T, ...], gone: Counter[Any]) -> tuple[T, ...]:
    """``items`` without one occurrence of each of ``gone``."""
    if not gone:
        return items
    gone = Counter(gone)
    kept: list[T] = []
    for item in items:
        if gone[item] > 0:
            gone[item] -= 1
        else:
            kept.append(item)
    return tuple(kept)


def diff(old: Sequence[T], new: Sequence[T]) -> tuple[tuple[T, ...], tuple[T, ...]]:
    """(added, removed) to turn ``old`` into ``new``, as multisets."""
    if tuple(old) == tuple(new):
        return (), ()
    before, after = Counter(old), Counter(new)
    return tuple((after - before).elements()), tuple((before - after).elements())


def _fingerprint(tasks: Iterable[Json]) -> frozenset[tuple[str, str]]:
    return frozenset((str(t.get("ID", "")), str((t.get("Status") or {}).get("State") or ""))
                     for t in tasks)


@dataclass(slots=True)
class _Seen:
    service: str
    up: bool
    sequence: int  # of the event that said so


@dataclass(slots=True)
class SwarmState:
    """One engine's networks, services and their desired-running tasks, and the overlay clients,
    with the records each service contributes as last handed out."""

    services: dict[str, Json] = field(default_factory=dict)
    tasks: dict[str, list[Json]] = field(default_factory=dict)  # by service ID
    _networks: tuple[Network, ...] = ()  # the swarm networks that carry names
    _names: dict[str, str] = field(default_factory=dict)  # network ID or name -> name
    _records: dict[str, tuple[Record, ...]] = field(default_factory=dict)  # by service ID
    _bridge: tuple[Network, ...] = ()  # docker_gwbridge, when there is one
    _clients: tuple[Client, ...] = ()
    _bridged: frozenset[str] = frozenset()  # container IDs on docker_gwbridge
    _local: dict[str, _Seen] = field(default_factory=dict)  # by task ID

    # --- what is known ---------------------------------------------------------------------

    def part(self) -> SourcePart:
        return SourcePart(networks=self._networks + self._bridge,
                          records=tuple(r for sid in sorted(self._records)
                                        for r in self._records[sid]),
                          clients=self._clients)

    @property
    def local(self) -> dict[str, bool]:
        return {task: seen.up for task, seen in self._local.items()}

    def converging(self, service_id: str) -> bool:
        service = self.services.get(service_id)
        return service is not None and converging(service, self.tasks.get(service_id, ()),
                                                  self.local)

    @property
    def bridged(self) -> frozenset[str]:
        """IDs of the containers the last clients read found on docker_gwbridge."""
        return self._bridged

    def task(self, service_id: str, task_id: str) -> Json | None:
        """A desired-running task as last read (None: not read yet, or no longer wanted)."""
        for task in self.tasks.get(service_id, ()):
            if task.get("ID") == task_id:
                return task
        return None

    def task_containers(self) -> set[str]:
        """Container IDs of the known tasks."""
        return {str(((t.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
                    or "") for tasks in self.tasks.values() for t in tasks} - {""}

    # --- changes ---------------------------------------------------------------------------

    def replace_all(self, networks: Sequence[Json], services: Sequence[Json],
                    tasks: Sequence[Json], started: int) -> Delta:
        """A full read: every service and task the manager lists now (``started``: the event
        sequence number when the read began)."""
        delta = self._set_networks(networks)
        listed = {str(s.get("ID", "")): s for s in services}
        by_service: dict[str, list[Json]] = {sid: [] for sid in listed}
        for item in tasks:
            sid = str(item.get("ServiceID", ""))
            if sid in by_service:
                by_service[sid].append(item)
        specs: dict[str, Json | None] = {**listed}
        specs.update((sid, None) for sid in set(self.services) - set(listed))
        delta += self.set_services(specs, by_service, started)
        for task_id, seen in list(self._local.items()):  # sightings of services never listed
            if seen.service not in listed and seen.sequence < started:
                del self._local[task_id]
        return delta

    def set_networks(self, networks: Sequence[Json]) -> Delta:
        return self._set_networks(networks)

    def _set_networks(self, raw: Sequence[Json]) -> Delta:
        networks = tuple(swarm_networks(raw))
        if networks == self._networks:
            return Delta()
        added, removed = diff(self._networks, networks)
        self._networks = networks
        self._names = network_index(networks)
        # Every service's records name networks: recompute them all (networks change rarely).
        return (Delta(SourcePart(networks=added), SourcePart(networks=removed))
                + self._recompute(list(self.services)))

    def set_services(self, services: Mapping[str, Json | None],
                     tasks: Mapping[str, Sequence[Json]], started: int) -> Delta:
        """New specs (None: the service is gone) and desired-running task lists for some
        services; a read of services and tasks that began at event ``started``."""
        changed: set[str] = set()
        for sid, service in services.items():
            if service is None:
                if self.services.pop(sid, None) is not None:
                    changed.add(sid)
                self.tasks.pop(sid, None)
                self._prune(sid, (), started)
            else:
                if sid not in self.services:
                    changed.add(sid)
                self.services[sid] = service
        for sid, listed in tasks.items():
            if sid not in self.services:
                continue
            if _fingerprint(listed) != _fingerprint(self.tasks.get(sid, ())):
                changed.add(sid)
            self.tasks[sid] = list(listed)
            self._prune(sid, listed, started)
        delta = self._recompute(sorted(set(services) | set(tasks)))
        return Delta(delta.added, delta.removed, frozenset(changed))

    def clear_services(self) -> Delta:
        """The engine is no longer a manager: no services, no swarm networks."""
        removed = SourcePart(networks=self._networks, records=tuple(
            r for sid in sorted(self._records) for r in self._records[sid]))
        changed = frozenset(self.services)
        self.services.clear()
        self.tasks.clear()
        self._records.clear()
        self._local.clear()
        self._networks = ()
        self._names = {}
        return Delta(NOTHING, removed, changed)

    def task_seen(self, service_id: str, task_id: str, up: bool, sequence: int) -> Delta:
        """This node's engine says the task's container is up (started, or turned healthy) or
        down (died)."""
        old = self._local.get(task_id)
        self._local[task_id] = _Seen(service_id, up, sequence)
        if old is not None and old.up == up:
            return Delta()
        return self._recompute([service_id])

    def set_clients(self, gwbridge: Json | None, containers: Sequence[Json]) -> Delta:
        bridge = (gwbridge_network(gwbridge),) if gwbridge is not None else ()
        clients = tuple(overlay_clients(gwbridge, containers)) if gwbridge is not None else ()
        added_n, removed_n = diff(self._bridge, bridge)
        added_c, removed_c = diff(self._clients, clients)
        self._bridge, self._clients = bridge, clients
        self._bridged = frozenset(str(c) for c in ((gwbridge or {}).get("Containers") or {}))
        return Delta(SourcePart(networks=added_n, clients=added_c),
                     SourcePart(networks=removed_n, clients=removed_c))

    # --- internals -------------------------------------------------------------------------

    def _prune(self, service_id: str, listed: Sequence[Json], started: int) -> None:
        """Drop what this node saw of a task once the manager agrees or the task is gone; only
        for sightings older than the read (a newer one may not be in it yet)."""
        states = {str(t.get("ID", "")): str((t.get("Status") or {}).get("State") or "")
                  for t in listed}
        for task, seen in list(self._local.items()):
            if seen.service != service_id or seen.sequence >= started:
                continue
            state = states.get(task)
            if state is None or state in TERMINAL or (seen.up and state == RUNNING):
                del self._local[task]

    def _recompute(self, service_ids: Iterable[str]) -> Delta:
        local = self.local
        added: list[Record] = []
        removed: list[Record] = []
        for sid in service_ids:
            service = self.services.get(sid)
            new = tuple(service_records([service], self.tasks.get(sid, ()), self._names,
                                        local)) if service is not None else ()
            old = self._records.get(sid, ())
            plus, minus = diff(old, new)
            added.extend(plus)
            removed.extend(minus)
            if new:
                self._records[sid] = new
            else:
                self._records.pop(sid, None)
        return Delta(SourcePart(records=tuple(added)), SourcePart(records=tuple(removed)))
