"""The churn scenario's judgement of its runs: QPS and p99 of each churn run against the steady
run of the same round, losses, and the engine's achieved rate said as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import churn
from benchmarks.scenarios import Context


def summary(runs: list[tuple[float, float, int]]) -> dict[str, Any]:
    return {"qps": int(runs[0][0]), "p99_ms": runs[0][1], "lost": sum(r[2] for r in runs),
            "cpu_us_per_query": 8.0,
            "runs": [{"qps": q, "p99_ms": p, "lost": lost, "cpu_us_per_query": 8.0}
                     for q, p, lost in runs]}


@pytest.fixture
def churner() -> Iterator[churn.Churn]:
    made = churn.Churn(None)
    yield made
    made.close()


def judged(tmp_path: Path, churner: churn.Churn, steady: list[tuple[float, float, int]],
           churning: list[tuple[float, float, int]],
           rates: list[tuple[float, float]]) -> dict[str, Any]:
    results = {"steady": summary(steady), "churn": summary(churning)}
    return churn._result(Context(tmp_path, 1.0, len(steady), 1), results, rates, [0.1],
                         churner)


def targets(result: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t for t in result["targets"]}


def test_within_ten_percent_and_nothing_lost(tmp_path: Path, churner: churn.Churn) -> None:
    result = judged(tmp_path, churner, [(100_000, 1.0, 0), (90_000, 2.0, 0)],
                    [(95_000, 1.05, 0), (85_000, 2.1, 0)], [(20.0, 20.0), (19.5, 20.0)])
    found = targets(result)
    assert found["churn_qps"]["met"] is True and found["churn_qps"]["measured"] == 0.947
    assert found["churn_p99"]["met"] is True and found["churn_p99"]["measured"] == 1.05
    assert found["churn_lost"]["met"] is True
    assert result["churn"]["starts_per_s"] == 19.8
    assert "cannot reach" not in result["notes"][0]


def test_slower_later_or_lossy_churn_is_missed(tmp_path: Path, churner: churn.Churn) -> None:
    result = judged(tmp_path, churner, [(100_000, 1.0, 0)], [(50_000, 8.0, 3)], [(1.2, 0.9)])
    found = targets(result)
    assert found["churn_qps"]["met"] is False and found["churn_qps"]["measured"] == 0.5
    assert found["churn_p99"]["met"] is False and found["churn_p99"]["measured"] == 8.0
    assert found["churn_lost"]["met"] is False and found["churn_lost"]["measured"] == 3.0
    assert all(found[key]["why"] and found[key]["closes"] for key in found)
    # The engine's rate, as reached: said, not hidden.
    assert "1.2 starts/s and 0.9 stops/s" in result["notes"][0]
    assert f"cannot reach {churn.RATE}/s" in result["notes"][0]


def test_no_churn_judges_nothing(tmp_path: Path, churner: churn.Churn) -> None:
    # The engine started nothing while dnsperf ran: equal figures mean nothing.
    result = judged(tmp_path, churner, [(100_000, 1.0, 0)], [(100_000, 1.0, 0)], [(0.0, 0.4)])
    assert all(t["met"] is None and t["measured"] is None for t in result["targets"])
    assert any("not judged" in note for note in result["notes"])


def where(dockdns: float, delay: float, busy: float, engine: float) -> dict[str, Any]:
    """A run's median schedstat summary, as benchmarks/schedstat.py makes it."""
    return {"seconds": 4.0, "cpus": {"0": {"busy": busy / 2, "system": 0.2, "softirq": 0.01},
                                     "1": {"busy": busy / 2, "system": 0.2, "softirq": 0.01}},
            "processes": {
                "dockdns": {"cores": dockdns, "delay_ms_per_s": delay, "voluntary_per_s": 900,
                            "involuntary_per_s": 50, "cpu_cores_with_children": dockdns,
                            "threads": {"main": {"cores": dockdns, "delay_ms_per_s": delay}}},
                "dnsperf": {"cores": 0.9, "delay_ms_per_s": 20.0},
                "dockerd": {"cores": engine / 4, "cpu_cores_with_children": engine / 2},
                "shims": {"cores": engine / 4, "cpu_cores_with_children": engine / 2}}}


def slowed(tmp_path: Path, churner: churn.Churn, churned: dict[str, Any]) -> dict[str, Any]:
    """A churn run at 0.4 of steady's QPS, with ``churned`` as its schedstat summary."""
    results = {"steady": summary([(100_000, 1.0, 0)]), "churn": summary([(40_000, 9.0, 0)])}
    spent = {"steady": where(0.9, 20.0, 1.4, 0.0), "churn": churned}
    engine = churned["processes"]["dockerd"]["cpu_cores_with_children"] * 2
    return churn._result(Context(tmp_path, 1.0, 1, 1), results, [(3.5, 1.0)], [engine],
                         churner, spent)


def test_a_starved_server_is_said_to_have_lost_the_cpu(tmp_path: Path,
                                                        churner: churn.Churn) -> None:
    result = slowed(tmp_path, churner, where(0.3, 600.0, 1.98, 1.2))
    assert result["churn"]["where"]["churn"]["engine_cores"] == 1.2
    assert result["churn"]["where"]["churn"]["dockdns_delay_ms_per_s"] == 600.0
    why = targets(result)["churn_qps"]["why"]
    assert "lost to the CPU the engine took" in why
    assert "runnable but not running 600 ms of every second (20 steady" in why
    assert any(f["name"].startswith("dockdns runnable but not running") and
               f["value"] == "20 → 600" for f in result["figures"])


def test_without_a_crowded_machine_the_cpu_is_not_blamed(tmp_path: Path,
                                                          churner: churn.Churn) -> None:
    result = slowed(tmp_path, churner, where(0.4, 30.0, 1.0, 0.2))
    assert "lost to the CPU" not in targets(result)["churn_qps"]["why"]
