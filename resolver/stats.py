"""Query counters kept as plain integers, so that counting costs the hot path one list increment.

The metrics endpoint reads them when it is scraped; nothing on the query path touches
prometheus-client objects or builds label tuples.
"""

from __future__ import annotations

# Where an answer came from, the `source` label of dockdns_queries_total.
SOURCE_LOCAL = "local"
SOURCE_CACHE = "cache"
SOURCE_FORWARD = "forward"
SOURCE_ERROR = "error"


class QueryStats:
    def __init__(self) -> None:
        self._slots: dict[tuple[int, int, str], int] = {}
        self.labels: list[tuple[int, int, str]] = []
        self.counts: list[int] = []
        self.dropped = 0  # packets that got no reply at all (garbage, responses)
        self.internal_errors = 0

    def slot(self, qtype: int, rcode: int, source: str) -> int:
        """The index that counts queries of this kind; made once, then reused."""
        key = (qtype, rcode, source)
        index = self._slots.get(key)
        if index is None:
            index = len(self.counts)
            self._slots[key] = index
            self.labels.append(key)
            self.counts.append(0)
        return index

    def count(self, qtype: int, rcode: int, source: str) -> None:
        self.counts[self.slot(qtype, rcode, source)] += 1

    def totals(self) -> dict[tuple[int, int, str], int]:
        return dict(zip(self.labels, self.counts, strict=True))
