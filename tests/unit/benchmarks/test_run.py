"""``benchmarks.run --render``: a stored run written again, its targets restated by the scenarios
from the figures they measured (nothing is measured)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import run


def _change(silence: float) -> dict[str, Any]:
    return {"max_silence_ms": silence, "p99_ms": 0.4, "lost": 0, "peak_rss_mb": 480.0}


def _stored(out: Path) -> None:
    hosts = {"status": "ok", "lines": 1_000_000, "cpu_ratios": {}, "servers": {
        "dockdns": {"first_answer_s": 6.3, "rss_mb": 455.5, "peak_rss_start_mb": 462.8,
                    "one_line_change": _change(12.5)},
        "unbound": {"first_answer_s": 5.6, "rss_mb": 607.1, "peak_rss_start_mb": 607.1,
                    "one_line_change": _change(3.1), "reload": _change(5400.0)}},
        # As an older tree stated them: judged, but no value to show.
        "targets": {"max_silence_ms <= 10": True}}
    swarm = {"status": "ok", "scale_up_lag_median_ms": 9.7, "notes": [], "sizes": {
        str(size): {"swarm_calls_per_minute": 11.0, "calls_per_minute": 17.0,
                    "kib_per_minute": 100.0 * size} for size in (20, 200)}}
    machine = {"cpu": "AMD EPYC", "cores": 2, "kernel": "6", "python": "3.11.7"}
    settings = {"smoke": False, "seconds": 4.0, "rounds": 5, "propagation_starts": 50,
                "clients": 4, "threads": 1, "outstanding": 100, "pinning": None}
    document = {"date": "2026-12-03 07:50 UTC", "machine": machine, "settings": settings,
                "load": {"before": 0.2, "after": 1.0}, "commit": "0000000",
                "scenarios": {"hosts_scale": hosts, "swarm_calls": swarm}, "targets": [],
                "history": []}
    (out / "results.json").write_text(json.dumps(document))


def test_render_restates_targets_from_the_stored_figures(tmp_path: Path) -> None:
    _stored(tmp_path)
    assert run.main(["--render", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "results.json").read_text())
    targets = {t["key"]: t for t in document["targets"]}
    # The silence is judged on its value now, and the old verdict ("met") is gone with it.
    assert targets["hosts_silence"]["value"] == 12.5
    assert targets["hosts_silence"]["met"] is False
    assert targets["hosts_rss"]["value"] == round(455.5 / 607.1, 3)
    assert targets["hosts_rss"]["met"] is True
    assert targets["swarm_calls"]["value"] == 1.0 and targets["swarm_calls"]["met"]
    assert targets["swarm_scale_up"]["met"] is False
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "longest silence during a one-line change | <= 10 ms | 12.500 | **no**" in markdown
    assert "engine calls a minute at 200 tasks" in markdown
