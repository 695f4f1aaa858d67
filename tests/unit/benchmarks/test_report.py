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


# Results shaped as benchmarks/capacity.py and benchmarks/hosts_scale.py (other branches) write
# them: their targets are dicts, their servers' figures are not dnsperf summaries.
CAPACITY = {"status": "ok", "outstanding": 200, "runs_count": 2, "sent": 2_000_000, "lost": 2,
            "lost_per_run": [2, 0], "udp": {"RcvbufErrors": 2}, "runs": [{"lost": 2}],
            "targets": {"lost": {"goal": "lost == 0", "value": 2, "met": False}}}
HOSTS_SCALE = {"status": "ok", "lines": 1_000_000,
               "servers": {"dockdns": {"first_answer_s": 8.6, "rss_mb": 963.0,
                                       "one_line_change": {"max_silence_ms": 3.0}},
                           "unbound": {"first_answer_s": 4.9, "rss_mb": 605.0}},
               "ratios": {"rss dockdns/unbound": 1.592}, "cpu_ratios": {},
               "targets": {"max_silence_ms <= 10": True, "rss_mb <= unbound": False}}


def test_results_from_the_other_branches_render() -> None:
    scenarios = {"capacity": CAPACITY, "hosts_scale": HOSTS_SCALE}
    found = {t.key: t for t in report.targets(scenarios)}
    assert found["capacity:lost"].met is False and found["capacity:lost"].value == 2.0
    assert found["hosts_scale:rss_mb <= unbound"].met is False
    assert found["hosts_scale:max_silence_ms <= 10"].met is True
    assert report.dockdns_runs(scenarios) == []  # neither is a default-load dnsperf summary
    text = report.markdown(document(scenarios))
    assert "## Nothing lost at capacity" in text and "## Hosts files at scale" in text
    assert "| lost_per_run | 2, 0 |" in text and "| lost | 2 |" in text
    assert "| server | first_answer_s | rss_mb |" in text
    assert "| dockdns | 8.60 | 963.00 |" in text
    assert "| capacity: lost | lost == 0 | 2.000 | **no** |" in text
    assert "- **capacity: lost**\n" in text
    assert "QPS ratios: rss dockdns/unbound = **1.592**" in text
    assert "could not be rendered" not in text


def test_an_unrenderable_result_costs_only_its_section() -> None:
    odd = {"status": "ok", "servers": {"dockdns": "not a dict"}, "ratios": {"a": "b"}}
    text = report.markdown(document({"odd": odd, "capacity": CAPACITY}))
    assert "## Nothing lost at capacity" in text
