"""The registry: the parts every source reported, merged into one snapshot that is swapped whole."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TypeVar

from discovery.registry.model import Snapshot, SourcePart

log = logging.getLogger("dockdns.registry")

Listener = Callable[[Snapshot], None]
T = TypeVar("T")
NOTHING = SourcePart()


def _without(items: tuple[T, ...], removed: Iterable[T]) -> tuple[T, ...]:
    """``items`` less one occurrence of each of ``removed`` (a multiset difference: a hosts file
    may hold the same line twice, and removing one leaves the other)."""
    gone = Counter(removed)
    if not gone:
        return items
    kept: list[T] = []
    for item in items:
        if gone.get(item, 0) > 0:
            gone[item] -= 1
        else:
            kept.append(item)
    return tuple(kept)


class Registry:
    """Owned by the event loop: sources call ``update`` from it, never from another thread."""

    def __init__(self) -> None:
        self._parts: dict[str, SourcePart] = {}
        self._listeners: list[Listener] = []
        self.snapshot: Snapshot = Snapshot.empty()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def part(self, source: str) -> SourcePart | None:
        return self._parts.get(source)

    def sources(self) -> list[str]:
        return sorted(self._parts)

    def update(self, source: str, part: SourcePart) -> bool:
        """Replace what ``source`` contributes; rebuild and publish only if something changed."""
        if self._parts.get(source) == part:
            return False
        self._parts[source] = part
        self._publish()
        return True

    def change(self, source: str, added: SourcePart = NOTHING,
               removed: SourcePart = NOTHING) -> bool:
        """Apply a delta to what ``source`` contributes: ``removed`` holds networks, records and
        clients it contributed before (one occurrence each), ``added`` new ones. A source that
        knows what changed (one container, one hosts line) says only that, instead of its whole
        part. Publishes only if something changed."""
        if not (added.networks or added.records or added.clients or removed.networks
                or removed.records or removed.clients):
            return False
        old = self._parts.get(source, NOTHING)
        part = SourcePart(
            networks=_without(old.networks, removed.networks) + added.networks,
            records=_without(old.records, removed.records) + added.records,
            clients=_without(old.clients, removed.clients) + added.clients,
        )
        return self.update(source, part)

    def remove(self, source: str) -> None:
        if self._parts.pop(source, None) is not None:
            self._publish()

    def _publish(self) -> None:
        parts = [self._parts[name] for name in sorted(self._parts)]
        self.snapshot = Snapshot.build(self.snapshot.generation + 1, parts)
        log.debug("registry generation %d: %d names", self.snapshot.generation,
                  self.snapshot.name_count())
        for listener in self._listeners:
            listener(self.snapshot)
