"""The registry: what every source contributes, merged into one ``Snapshot`` that each delta
changes in place (never rebuilt), and the listeners told of each change."""

from __future__ import annotations

import logging
from collections.abc import Callable

from discovery.registry.index import Store, Touched, multiset_delta
from discovery.registry.model import Snapshot, SourcePart

log = logging.getLogger("dockdns.registry")

Listener = Callable[[Snapshot], None]
# Told what a change touched, so that what it derived (memos, views) forgets only that.
ChangeListener = Callable[[Snapshot, Touched], None]
NOTHING = SourcePart()


class Registry:
    """Owned by the event loop: sources call ``update``/``change`` from it, never from another
    thread. Each call changes ``snapshot`` within the call: readers on the loop never see half of
    it."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._change_listeners: list[ChangeListener] = []
        self.snapshot: Snapshot = Snapshot.empty()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def watch(self, listener: ChangeListener) -> None:
        """Like ``subscribe``, with what each change touched; called before plain listeners."""
        self._change_listeners.append(listener)

    def part(self, source: str) -> SourcePart | None:
        """What ``source`` contributes now, as a multiset (each item in the order it first
        came); None for a source that never reported."""
        store = self.snapshot.parts.get(source)
        return None if store is None else store.part()

    def sources(self) -> list[str]:
        return sorted(self.snapshot.parts)

    def update(self, source: str, part: SourcePart) -> bool:
        """Replace what ``source`` contributes (for sources that publish whole parts): the
        difference from what it contributed is applied as a delta. Publishes only if something
        changed."""
        store = self.snapshot.parts.get(source)
        if store is None:
            self.snapshot.parts[source] = Store()
            touched = self.snapshot.apply(source, part, NOTHING)
            touched.networks = True  # a new source: its listeners start over
            self._publish(touched)
            return True
        gone_networks, new_networks = multiset_delta(part.networks, store.networks)
        gone_records, new_records = multiset_delta(part.records, store.records)
        gone_clients, new_clients = multiset_delta(part.clients, store.clients)
        return self.change(source,
                           SourcePart(tuple(new_networks), tuple(new_records), tuple(new_clients)),
                           SourcePart(tuple(gone_networks), tuple(gone_records),
                                      tuple(gone_clients)))

    def change(self, source: str, added: SourcePart = NOTHING,
               removed: SourcePart = NOTHING) -> bool:
        """Apply a delta to what ``source`` contributes: ``removed`` holds networks, records and
        clients it contributed before (one occurrence each; what it does not hold is ignored),
        ``added`` new ones. A source that knows what changed (one container, one hosts line)
        says only that, instead of its whole part. Publishes only if something changed."""
        if not (added.networks or added.records or added.clients or removed.networks
                or removed.records or removed.clients):
            return False
        touched = self.snapshot.apply(source, added, removed)
        if not touched:
            return False
        self._publish(touched)
        return True

    def remove(self, source: str) -> None:
        touched = self.snapshot.drop(source)
        if touched is not None:
            self._publish(touched)

    def _publish(self, touched: Touched) -> None:
        self.snapshot.generation += 1
        if log.isEnabledFor(logging.DEBUG):  # name_count is a sum over every table
            log.debug("registry generation %d: %d names", self.snapshot.generation,
                      self.snapshot.name_count())
        for change_listener in self._change_listeners:
            change_listener(self.snapshot, touched)
        for listener in self._listeners:
            listener(self.snapshot)
