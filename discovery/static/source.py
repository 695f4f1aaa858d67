"""Static records as the registry part ``static``, replaced whole when the config changes."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from discovery.registry.model import Snapshot, SourcePart
from discovery.registry.registry import Registry
from discovery.static.records import StaticRecord, conflicts, to_records

log = logging.getLogger("dockdns.static")

PART = "static"


class StaticSource:
    def __init__(self, registry: Registry, records: Sequence[StaticRecord]) -> None:
        self.registry = registry
        self.records = tuple(records)

    def load(self) -> None:
        self.registry.update(PART, SourcePart(records=to_records(self.records)))

    def others(self) -> Snapshot:
        """The registry without the static part: what a new set of records is checked against."""
        parts = [self.registry.part(name) for name in self.registry.sources() if name != PART]
        return Snapshot.build(0, [part for part in parts if part is not None])

    def conflicts(self, records: Sequence[StaticRecord] | None = None) -> list[str]:
        return conflicts(self.records if records is None else records, self.registry.snapshot)

    def replace(self, records: Sequence[StaticRecord]) -> bool:
        """Take new records unless one conflicts with a container name (then log, keep the
        old ones); True when taken."""
        records = tuple(records)
        if records == self.records:
            return True
        problems = conflicts(records, self.others())
        if problems:
            log.error("invalid setting 'records': %s; keeping the %d records from before",
                      problems[0], len(self.records))
            return False
        self.records = records
        self.load()
        log.info("static records: %d", len(records))
        return True
