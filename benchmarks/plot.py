"""results.png: QPS and p99 per scenario per server, two panels of grouped bars, from one run's
document (what results.json holds). RESULTS.md embeds it and the README links it.

matplotlib is an optional dependency (``pip install '.[bench]'``; tests/setup.sh installs it):
without it the run still writes RESULTS.md and results.json, and says the plot was left out.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

NAME = "results.png"
# The reference servers keep one colour each across scenarios; every other label is a dockdns
# (a registry size, a worker count, steady or churning) and is drawn in dockdns's blue.
DOCKDNS = "#1f77b4"
REFERENCE = {"dnsmasq": "#ff7f0e", "knot": "#2ca02c", "unbound": "#d62728", "nsd": "#8c564b",
             "docker": "#9467bd"}
GAP = 1.0  # bar widths between scenario groups


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def bars(document: dict[str, Any]) -> list[tuple[str, list[tuple[str, float, float]]]]:
    """Per scenario that measured servers with dnsperf: ``(scenario, [(server, qps, p99 ms)])``,
    in the document's order."""
    found = []
    for scenario, result in document.get("scenarios", {}).items():
        if result.get("status") != "ok" or not isinstance(result.get("servers"), dict):
            continue
        rows = [(label, float(s["qps"]), float(s["p99_ms"]))
                for label, s in result["servers"].items()
                if isinstance(s, dict) and isinstance(s.get("qps"), int | float)
                and isinstance(s.get("p99_ms"), int | float)]
        if rows:
            found.append((scenario, rows))
    return found


def write(document: dict[str, Any], path: Path) -> str | None:
    """Draw the run's figures into ``path``; its file name, or None if nothing was drawn."""
    groups = bars(document)
    if not groups or not available():
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only: no display here
    from matplotlib import pyplot

    colours: dict[str, str] = {}
    positions: list[float] = []
    labels: list[str] = []
    qps: list[float] = []
    p99: list[float] = []
    colour_of: list[str] = []
    centres: list[tuple[float, str]] = []
    x = 0.0
    for scenario, rows in groups:
        first = x
        for label, q, p in rows:
            colour = REFERENCE.get(label, DOCKDNS)
            colours[label if label in REFERENCE else "dockdns"] = colour
            positions.append(x)
            labels.append(label)
            qps.append(q)
            # A log axis cannot show 0 (a run under dnsperf's 1 µs resolution).
            p99.append(max(p, 0.001))
            colour_of.append(colour)
            x += 1.0
        centres.append(((first + x - 1.0) / 2, scenario.replace("_", " ")))
        x += GAP
    figure, (top, bottom) = pyplot.subplots(2, 1, figsize=(max(10.0, x * 0.42), 8.5),
                                            sharex=True, layout="constrained")
    drawn = top.bar(positions, qps, color=colour_of)
    top.bar_label(drawn, [f"{q / 1000:.0f}k" if q >= 1000 else f"{q:.0f}" for q in qps],
                  fontsize=6, padding=1)
    top.set_ylabel("queries per second (median)")
    top.grid(axis="y", alpha=0.3)
    top.set_ylim(0, max(qps) * 1.12)
    drawn = bottom.bar(positions, p99, color=colour_of)
    bottom.bar_label(drawn, [f"{p:.2g}" for p in p99], fontsize=6, padding=1)
    bottom.set_yscale("log")
    bottom.set_ylabel("p99 latency, ms (log)")
    bottom.grid(axis="y", alpha=0.3)
    bottom.set_xticks(positions, labels, rotation=60, ha="right", fontsize=8)
    for centre, scenario in centres:
        top.annotate(scenario, (centre, 1.0), xycoords=("data", "axes fraction"),
                     xytext=(0, 4), textcoords="offset points", ha="center", va="bottom",
                     fontsize=8)
    from matplotlib.patches import Patch

    top.legend(handles=[Patch(color=c, label=name) for name, c in colours.items()],
               loc="upper right", fontsize=7, ncols=len(colours))
    settings = document.get("settings", {})
    title = f"dockdns benchmarks, {document.get('date', '')}"
    if document.get("commit"):
        title += f", commit {document['commit']}"
    if settings.get("smoke"):
        title += " (smoke run: numbers meaningless)"
    figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path.name
