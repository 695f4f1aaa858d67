"""The query counters: one slot per kind, bounded labels for types and rcodes nobody asks for in
earnest, memo hits in slots of their own that merge again in the totals, and the histogram."""

from __future__ import annotations

from resolver.ops.stats import (
    OTHER_QTYPE,
    OTHER_RCODE,
    SOURCE_CACHE,
    SOURCE_FORWARD,
    SOURCE_LOCAL,
    DurationHistogram,
    QueryStats,
)


def test_slots_are_reused_and_counted() -> None:
    stats = QueryStats()
    slot = stats.slot(1, 0, SOURCE_LOCAL)
    assert stats.slot(1, 0, SOURCE_LOCAL) == slot != stats.slot(28, 0, SOURCE_LOCAL)
    stats.count(1, 0, SOURCE_LOCAL)
    stats.counts[slot] += 1
    assert stats.totals() == {(1, 0, SOURCE_LOCAL): 2, (28, 0, SOURCE_LOCAL): 0}
    assert stats.answered() == 2


def test_unknown_types_and_rcodes_share_one_label() -> None:
    stats = QueryStats()
    for qtype in range(60000, 60100):
        stats.count(qtype, 4000, SOURCE_FORWARD)
    assert stats.totals() == {(OTHER_QTYPE, OTHER_RCODE, SOURCE_FORWARD): 100}
    assert len(stats.counts) == 1


def test_memo_hits() -> None:
    stats = QueryStats()
    local = stats.slot(1, 0, SOURCE_LOCAL)
    forwarded = stats.slot(1, 0, SOURCE_FORWARD)
    local_memo, forward_memo = stats.memo_slot(local), stats.memo_slot(forwarded)
    stats.counts[local] += 1
    stats.counts[local_memo] += 3
    stats.counts[forward_memo] += 5
    assert stats.memo_hits() == 8
    # A forwarded answer given again from the memo did not go upstream: it is a cache answer.
    assert stats.memo_hits_from(SOURCE_CACHE) == 5 and stats.memo_hits_from(SOURCE_FORWARD) == 0
    assert stats.totals() == {(1, 0, SOURCE_LOCAL): 4, (1, 0, SOURCE_FORWARD): 0,
                              (1, 0, SOURCE_CACHE): 5}


def test_histogram_buckets() -> None:
    histogram = DurationHistogram((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.005, 0.5):
        histogram.observe(seconds)
    assert histogram.buckets == [2, 1, 1]
    assert abs(histogram.sum - 0.5065) < 1e-9
