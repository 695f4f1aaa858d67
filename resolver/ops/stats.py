"""Query counters kept as plain integers, so that counting costs the hot path one list increment.

The metrics endpoint reads them when it is scraped; nothing on the query path touches
prometheus-client objects or builds label tuples.

Memo hits are counted in slots of their own (``memo_slot``): the hot path still does one list
increment, and the metrics know how many queries were answered from the memo without a second
counter. The two kinds of slot are merged again for ``dockdns_queries_total``.
"""

from __future__ import annotations

from bisect import bisect_left

from resolver.dns.codes import KNOWN_QTYPES, KNOWN_RCODES

# Where an answer came from, the `source` label of dockdns_queries_total.
SOURCE_LOCAL = "local"
SOURCE_CACHE = "cache"
SOURCE_FORWARD = "forward"
SOURCE_ERROR = "error"

# A forwarded reply answered again from the memo did not go upstream: it is a cache answer.
_MEMO_SOURCE = {SOURCE_FORWARD: SOURCE_CACHE}

# Question types and rcodes get a counter (and a metrics series) of their own only when they are
# ones a name server is asked for in earnest: the types dnslib names (54, ANY and AXFR included)
# and the rcodes of RFC 6895 (0-11, 16-23). Anything else is counted under one "other" value, so a
# client sending every one of the 65,536 types (even one that is REFUSED) or an upstream making
# up 12-bit rcodes cannot grow the counters, and the /metrics page with them, past a few hundred
# series. TYPE0 is reserved (RFC 6895 3.1), RCODE 4095 is in the private-use range: no real
# question or answer is counted there by mistake. (The known ones: resolver/dns/codes.py.)
OTHER_QTYPE = 0
OTHER_RCODE = 4095

# Upper bounds (seconds) of the query duration histogram. The lowest bucket also holds every memo
# hit: those are answered synchronously in a few microseconds and are not timed one by one.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
)


class QueryStats:
    def __init__(self) -> None:
        self._slots: dict[tuple[int, int, str, bool], int] = {}
        self.labels: list[tuple[int, int, str]] = []
        self.memo: list[bool] = []  # per slot: whether it counts memo hits
        self.counts: list[int] = []
        self.dropped = 0  # packets that got no reply at all (garbage, responses)
        self.internal_errors = 0

    def slot(self, qtype: int, rcode: int, source: str, memo: bool = False) -> int:
        """The index that counts queries of this kind; made once, then reused."""
        key = (qtype, rcode, source, memo)
        index = self._slots.get(key)
        if index is not None:
            return index
        if qtype not in KNOWN_QTYPES or rcode not in KNOWN_RCODES:
            # Not remembered under its own key: the table keeps only the bounded labels.
            qtype = qtype if qtype in KNOWN_QTYPES else OTHER_QTYPE
            rcode = rcode if rcode in KNOWN_RCODES else OTHER_RCODE
            key = (qtype, rcode, source, memo)
            index = self._slots.get(key)
        if index is None:
            index = len(self.counts)
            self._slots[key] = index
            self.labels.append((qtype, rcode, source))
            self.memo.append(memo)
            self.counts.append(0)
        return index

    def memo_slot(self, slot: int) -> int:
        """The slot a memo entry made from an answer counted under ``slot`` counts its hits in."""
        qtype, rcode, source = self.labels[slot]
        return self.slot(qtype, rcode, _MEMO_SOURCE.get(source, source), memo=True)

    def count(self, qtype: int, rcode: int, source: str) -> None:
        self.counts[self.slot(qtype, rcode, source)] += 1

    def totals(self) -> dict[tuple[int, int, str], int]:
        """Queries answered per (qtype, rcode, source), memo hits included."""
        totals: dict[tuple[int, int, str], int] = {}
        for label, count in zip(self.labels, self.counts, strict=True):
            totals[label] = totals.get(label, 0) + count
        return totals

    def memo_hits(self) -> int:
        return sum(c for c, memo in zip(self.counts, self.memo, strict=True) if memo)

    def memo_hits_from(self, source: str) -> int:
        """Memo hits of answers labelled ``source`` (e.g. cached forwarded answers)."""
        return sum(count for (_, _, label), count, memo
                   in zip(self.labels, self.counts, self.memo, strict=True)
                   if memo and label == source)

    def answered(self) -> int:
        return sum(self.counts)


class DurationHistogram:
    """Durations of full-path answers in fixed buckets, as plain integers (no locks, no labels)."""

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self.bounds = bounds
        # One more bucket than bounds: the last counts what exceeds the highest bound (+Inf).
        self.buckets = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds
