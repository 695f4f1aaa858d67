"""The benchmark's history: each full run's hot-path figures, kept in results.json across runs and
shown at the end of RESULTS.md, so that a change's cost per query can be read against the runs
before it (a layout change may not raise local-name or cache-hit CPU per query by more than 3%)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

# (results.json scenario, server) -> the history column it fills.
COLUMNS: dict[str, tuple[str, str]] = {
    "local µs/q": ("local_names", "dockdns"),
    "cache hit µs/q": ("cache_hits", "dockdns"),
    "miss µs/q": ("forwarded_misses", "dockdns"),
    "container µs/q": ("container_names", "dockdns"),
    "100k names µs/q": ("registry_scaling", "100000"),
}
# Most runs kept: enough to see a trend, bounded so the file stays readable.
KEEP = 30


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False)
    return done.stdout.strip() or "unknown"


def summary(document: dict[str, Any]) -> dict[str, Any]:
    """One history row: the run's date, commit and the CPU per query of each hot path."""
    row: dict[str, Any] = {"date": document.get("date", "?"),
                           "commit": document.get("commit", "unknown"),
                           "smoke": document.get("settings", {}).get("smoke", False)}
    scenarios = document.get("scenarios", {})
    for column, (scenario, server) in COLUMNS.items():
        result = scenarios.get(scenario, {})
        row[column] = result.get("servers", {}).get(server, {}).get("cpu_us_per_query")
    return row


def _load(path: Path) -> dict[str, Any] | None:
    try:
        document: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return document


def extend(previous_path: Path, document: dict[str, Any],
           others: list[Path] | None = None) -> list[dict[str, Any]]:
    """The history to write with ``document``: the previous file's, plus that file's own run and
    any ``others`` (full runs only: a smoke run's figures mean nothing)."""
    previous = _load(previous_path)
    history: list[dict[str, Any]] = list(previous.get("history", [])) if previous else []
    for run in [previous, *(_load(path) for path in others or [])]:
        if run is not None and not run.get("settings", {}).get("smoke", False):
            history.append(summary(run))
    return history[-KEEP:]


def markdown(document: dict[str, Any]) -> list[str]:
    rows = [*document.get("history", []), summary(document)]
    out = ["", "## History (CPU µs per query of dockdns, earlier full runs first; the last row "
           "is this run)", "", "| date | commit | " + " | ".join(COLUMNS) + " |",
           "|---|---|" + "---:|" * len(COLUMNS)]
    for row in rows:
        cells = [f"{row[c]:.2f}" if isinstance(row.get(c), int | float) else "–"
                 for c in COLUMNS]
        out.append(f"| {row['date']} | {row['commit']} | " + " | ".join(cells) + " |")
    return out
