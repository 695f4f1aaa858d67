"""The benchmark harness's smoke run (a second per server): it must run and write sane numbers.
Nothing here judges speed; that is what `make bench` is for."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import engine
from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parents[2]


def smoke(out: Path, *scenarios: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)]
    for name in scenarios:
        argv += ["--scenario", name]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads((out / "results.json").read_text())
    assert (out / "RESULTS.md").read_text().startswith("# dockdns benchmark results")
    assert set(document["scenarios"]) == set(scenarios)
    return document


def check_servers(result: dict[str, Any], dockdns_labels: set[str]) -> None:
    assert result["status"] == "ok", result
    for label, server in result["servers"].items():
        completed = server["sent"] - server["lost"]
        assert server["qps"] > 0 and completed > 0, (label, server)
        assert 0 <= server["lost"] <= server["sent"]
        # Every query in every mix is a name the server holds.
        assert server["rcodes"] == {"NOERROR": completed}, (label, server["rcodes"])
        assert 0 < server["avg_ms"] and 0 <= server["p50_ms"] <= server["p99_ms"]
        assert server["cpu_us_per_query"] is not None and server["cpu_us_per_query"] >= 0
        if label in dockdns_labels:
            assert 1 < server["rss_mb"] < 2048, (label, server["rss_mb"])
            assert server["startup_s"] > 0
    for name, value in result["ratios"].items():
        assert math.isfinite(value) and value > 0, (name, value)


def test_smoke_run_on_loopback(tmp_path: Path) -> None:
    document = smoke(tmp_path, "local_names", "cache_hits", "registry_scaling", "workers")
    results = document["scenarios"]
    check_servers(results["local_names"], {"dockdns"})
    check_servers(results["registry_scaling"], {"10", "10000", "100000"})
    check_servers(results["workers"], {"workers=1", "workers=2"})
    cache = results["cache_hits"]
    if cache["status"] == "skipped":  # a tree without the forwarder says so, nothing else
        assert cache["reason"].startswith("no forwarder"), cache
    else:
        check_servers(cache, {"dockdns"})
    assert document["settings"]["smoke"] is True
    targets = {t["key"]: t for t in document["targets"]}
    assert targets["rss"]["value"] == results["local_names"]["servers"]["dockdns"]["rss_mb"]
    assert targets["propagation"]["met"] is None  # not run: reported as not measured


@pytest.mark.docker
def test_smoke_run_against_the_engine(tmp_path: Path) -> None:
    reason = engine.unavailable()
    if reason:
        if IN_CI:
            pytest.fail(f"the engine scenarios must run in CI: {reason}")
        pytest.skip(reason)
    document = smoke(tmp_path, "container_names", "propagation")
    results = document["scenarios"]
    check_servers(results["container_names"], {"dockdns"})
    propagation = results["propagation"]
    if propagation["status"] == "skipped":  # a tree without the Docker source says so
        assert propagation["reason"].startswith("no Docker source"), propagation
    else:
        assert propagation["status"] == "ok", propagation
        assert propagation["missed"] == 0
        assert len(propagation["delays_ms"]) == propagation["starts"]
        assert propagation["p50_ms"] <= propagation["p99_ms"]
