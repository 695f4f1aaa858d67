"""results.png: a bar per server per scenario that measured servers, drawn into a real PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import plot


def summary(qps: int, p99: float) -> dict[str, Any]:
    return {"qps": qps, "p99_ms": p99, "runs": []}


DOCUMENT = {
    "date": "2026-12-03 06:00 UTC", "commit": "abc1234", "settings": {"smoke": False},
    "scenarios": {
        "local_names": {"status": "ok", "servers": {"dockdns": summary(100_000, 1.0),
                                                    "knot": summary(120_000, 0.8)}},
        "propagation": {"status": "ok", "p99_ms": 3.0},  # no servers: no bars
        "churn": {"status": "skipped", "reason": "no engine"},
        "capacity": {"status": "ok", "servers": {"dockdns": {"lost": 0}}},  # no QPS: no bars
        "forwarded_misses": {"status": "ok", "servers": {"dockdns": summary(7_000, 0.0),
                                                         "unbound": summary(33_000, 12.5)}},
    },
}


def test_bars_per_scenario_and_server() -> None:
    assert plot.bars(DOCUMENT) == [
        ("local_names", [("dockdns", 100_000.0, 1.0), ("knot", 120_000.0, 0.8)]),
        ("forwarded_misses", [("dockdns", 7_000.0, 0.0), ("unbound", 33_000.0, 12.5)]),
    ]


def test_writes_a_png(tmp_path: Path) -> None:
    if not plot.available():
        pytest.skip("matplotlib is not installed (tests/setup.sh installs it)")
    path = tmp_path / "results.png"
    assert plot.write(DOCUMENT, path) == "results.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_nothing_to_draw(tmp_path: Path) -> None:
    path = tmp_path / "results.png"
    assert plot.write({"scenarios": {"propagation": DOCUMENT["scenarios"]["propagation"]}},
                      path) is None
    assert not path.exists()
