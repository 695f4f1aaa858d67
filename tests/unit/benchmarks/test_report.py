"""RESULTS.md from any scenario's result: a new scenario's own table, figures and targets appear
without an edit of report.py, and its targets are judged beside the built-in ones."""

from __future__ import annotations

from typing import Any

from benchmarks import goals, report


def document(scenarios: dict[str, Any]) -> dict[str, Any]:
    return {
        "date": "2026-12-03 06:00 UTC", "commit": "abc1234",
        "machine": {"cpu": "test", "cores": 2, "kernel": "6", "python": "3.11",
                    "dnsperf": "2.10", "knot": "unknown"},
        "load": {"before": 0.1, "after": 0.2},
        "settings": {"smoke": True, "seconds": 1, "rounds": 1, "clients": 4, "threads": 1,
                     "outstanding": 100, "pinning": None},
        "targets": report.target_dicts(report.targets(scenarios)),
        "scenarios": scenarios,
        "plot": None,
    }


NEW = {
    "status": "ok",
    "title": "Something new: loss at capacity",
    "servers": {"dockdns": {"lost": 3, "received": 1_000_000, "note": "rcvbuf"},
                "dnsmasq": {"lost": 0, "dropped_by_kernel": 0}},
    "batch": 64,
    "nested": {"not": "shown as a value"},
    "figures": [goals.figure("receive buffer errors", 3, "from /proc/net/snmp")],
    "targets": [goals.at_most("capacity_lost", "capacity: queries lost", 3.0, 0, " queries"),
                goals.at_least("capacity_ratio", "capacity: kept up", None, 1.0)],
    "notes": ["measured unpinned"],
}


def test_a_new_scenarios_result_is_rendered_whole() -> None:
    text = report.markdown(document({"capacity_new": NEW}))
    assert "## Something new: loss at capacity" in text
    # Its servers' figures as a table of their own: every scalar any server has, a column.
    assert "| server | lost | received | note | dropped_by_kernel |" in text
    assert "| dockdns | 3 | 1,000,000 | rcvbuf | – |" in text
    assert "| dnsmasq | 0 | – | – | 0 |" in text
    # Its other plain values, its figures and notes.
    assert "| batch | 64 |" in text and "nested" not in text
    assert "- receive buffer errors: **3** (from /proc/net/snmp)" in text
    assert "| capacity_new | receive buffer errors | 3 | from /proc/net/snmp |" in text
    assert "Note: measured unpinned" in text


def test_declared_targets_are_judged_with_the_others() -> None:
    missed = dict(NEW["targets"][0], why="the buffer filled", closes="a bigger buffer")
    scenarios = {"capacity_new": dict(NEW, targets=[missed, NEW["targets"][1]])}
    found = {t.key: t for t in report.targets(scenarios)}
    assert found["capacity_lost"].met is False and found["capacity_lost"].value == 3.0
    assert found["capacity_ratio"].met is None and found["capacity_ratio"].value is None
    assert found["propagation"].met is None  # the built-in ones are still there
    text = report.markdown(document(scenarios))
    assert "| capacity: queries lost | <= 0 queries | 3.000 | **no**: 3 queries over |" in text
    assert "| capacity: kept up | >= 1 | – | not measured |" in text
    assert "  Why: the buffer filled" in text and "  What would close it: a bigger buffer" in text


def test_a_skipped_scenario_keeps_its_place() -> None:
    text = report.markdown(document({"capacity": {"status": "skipped",
                                                  "reason": "not in this tree"}}))
    assert "## Nothing lost at capacity\n\nskipped: not in this tree" in text


def test_losses_at_another_load_are_the_scenarios_own() -> None:
    summary = {"qps": 1, "avg_ms": 1.0, "p99_ms": 1.0, "lost": 7, "sent": 10, "rcodes": {},
               "runs": []}
    at_500 = {"status": "ok", "outstanding": 500, "servers": {"dockdns": summary}}
    at_default = {"status": "ok", "servers": {"dockdns": summary}}
    assert report.dockdns_runs({"misses": at_500}) == []
    assert report.dockdns_runs({"local_names": at_default}) == [summary]


def test_the_plot_is_embedded_when_there_is_one() -> None:
    written = document({"capacity_new": NEW})
    assert "results.png" not in report.markdown(written)
    written["plot"] = "results.png"
    assert "![QPS and p99 latency per scenario and server](results.png)" in report.markdown(
        written)
