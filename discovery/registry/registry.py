"""The registry: the parts every source reported, merged into one snapshot that is swapped whole."""

from __future__ import annotations

import logging
from collections.abc import Callable

from discovery.registry.model import Snapshot, SourcePart

log = logging.getLogger("dockdns.registry")

Listener = Callable[[Snapshot], None]


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
