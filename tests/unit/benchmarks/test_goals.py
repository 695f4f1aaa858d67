"""Targets a scenario declares: met, missed by how much, or not measured."""

from __future__ import annotations

from benchmarks import goals


def test_at_least() -> None:
    assert goals.at_least("k", "ratio", 1.2, 1.0) == {
        "key": "k", "name": "ratio", "goal": ">= 1", "measured": 1.2, "met": True,
        "shortfall": ""}
    missed = goals.at_least("k", "ratio", 0.75, 1.0)
    assert missed["met"] is False and missed["shortfall"] == "25.0% short"
    assert goals.at_least("k", "ratio", None, 1.0)["met"] is None


def test_at_most() -> None:
    assert goals.at_most("k", "p99", 1.1, 1.1)["met"] is True
    assert goals.at_most("k", "p99", 2.2, 1.1)["shortfall"] == "100.0% over"
    assert goals.at_most("k", "lost", 4.0, 0, " queries")["shortfall"] == "4 queries over"
    assert goals.at_most("k", "lost", 0.0, 0, " queries")["goal"] == "<= 0 queries"


def test_normalize_accepts_each_shape() -> None:
    made = [goals.at_most("k", "churn: lost", 0.0, 0)]
    assert goals.normalize(made, "churn") == [dict(made[0])]
    # name -> dict, "value" for "measured" (as benchmarks/capacity.py writes them)
    assert goals.normalize({"lost": {"goal": "lost == 0", "value": 3, "met": False}},
                           "capacity") == [
        {"key": "capacity:lost", "name": "capacity: lost", "goal": "lost == 0", "value": 3,
         "measured": 3, "met": False}]
    # name -> met (as benchmarks/hosts_scale.py writes them)
    assert goals.normalize({"rss_mb <= unbound": True}, "hosts_scale") == [
        {"key": "hosts_scale:rss_mb <= unbound", "name": "hosts_scale: rss_mb <= unbound",
         "goal": "rss_mb <= unbound", "measured": None, "met": True}]
    assert goals.normalize(None, "x") == [] and goals.normalize("odd", "x") == []
    assert goals.normalize([{"met": "yes?"}], "x") == [
        {"key": "x:0", "name": "x: target 1", "goal": "", "measured": None, "met": None}]
