"""``python3 -m benchmarks.run``: every scenario of benchmarks/catalog.py in one run, then
RESULTS.md, results.json and results.png. ``--smoke`` is the short run CI makes to prove the
harness still works.

All traffic stays on loopback and inside containers the harness makes; every dockdns started
here forwards only to a dnsmasq the harness runs on loopback.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import catalog, cpus, dnsperf, goals, history, plot, report, scenarios

HERE = Path(__file__).resolve().parent

FULL = {"seconds": 4.0, "rounds": 5, "propagation_starts": 50}
SMOKE = {"seconds": 1.0, "rounds": 1, "propagation_starts": 3}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.run", description=__doc__)
    parser.add_argument("--smoke", action="store_true",
                        help="a second per server and one round: proves the harness works")
    parser.add_argument("--scenario", "--only", action="append",
                        choices=list(catalog.SCENARIOS),
                        help="run only this scenario (repeatable; default: all)")
    parser.add_argument("--skip", action="append", choices=list(catalog.SCENARIOS),
                        help="leave this scenario out (repeatable)")
    parser.add_argument("--seconds", type=float, help="length of each dnsperf run")
    parser.add_argument("--rounds", type=int, help="how often each server is measured")
    parser.add_argument("--starts", type=int, help="container starts for propagation")
    parser.add_argument("--no-pin", action="store_true",
                        help="let the scheduler place dnsperf and the servers (default: dnsperf "
                             "on the first CPU, each server on the others)")
    parser.add_argument("--out", type=Path, default=HERE,
                        help="where RESULTS.md and results.json go (default: benchmarks/)")
    parser.add_argument("--history-from", type=Path, action="append", default=[],
                        metavar="RESULTS_JSON", help="also put this other run's figures in the "
                        "history (e.g. the same scenarios run on an earlier commit just before)")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: write RESULTS.md and results.png again from the "
                             "results.json in --out, with the report and the scenarios' "
                             "targets as this tree states them")
    return parser


def render(out: Path) -> dict[str, Any]:
    """The run stored in ``out``, its targets restated by each scenario that can (``restate``
    in its module) from the figures it measured."""
    document: dict[str, Any] = json.loads((out / "results.json").read_text())
    for name, result in document["scenarios"].items():
        scenario = catalog.SCENARIOS.get(name)
        restate = getattr(sys.modules.get(getattr(scenario, "__module__", "")), "restate", None)
        if result.get("status") == "ok" and restate is not None:
            restate(result)
    document["targets"] = report.target_dicts(report.targets(document["scenarios"]))
    return document


def run(args: argparse.Namespace) -> dict[str, Any]:
    preset = SMOKE if args.smoke else FULL
    seconds = args.seconds or preset["seconds"]
    rounds = args.rounds or int(preset["rounds"])
    starts = args.starts or int(preset["propagation_starts"])
    selected = catalog.select(args.scenario, args.skip)
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dockdns-bench-") as work:
        pinning = None if args.no_pin else cpus.plan()
        ctx = scenarios.Context(Path(work), seconds, rounds, starts, pinning)
        with scenarios.upstream(ctx):
            for name in selected:
                print(f"== {name}", file=sys.stderr, flush=True)
                try:
                    result = catalog.SCENARIOS[name](ctx)
                    if not isinstance(result, dict) or "status" not in result:
                        raise TypeError(f"the scenario returned {type(result).__name__}, not "
                                        "a dict with a status")
                    results[name] = result
                except scenarios.Skip as skip:
                    results[name] = {"status": "skipped", "reason": str(skip)}
                except Exception as err:
                    traceback.print_exc()
                    results[name] = {"status": "error", "reason": f"{type(err).__name__}: {err}"}
                print(f"   {_one_line(results[name])}", file=sys.stderr, flush=True)
    found = report.targets(results)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": report.machine(),
        "load": {"before": load_before, "after": os.getloadavg()[0]},
        "settings": {"smoke": args.smoke, "seconds": seconds, "rounds": rounds,
                     "propagation_starts": starts, "clients": dnsperf.CLIENTS,
                     "threads": dnsperf.THREADS, "outstanding": dnsperf.OUTSTANDING,
                     "pinning": pinning.describe() if pinning else None},
        "targets": report.target_dicts(found),
        "scenarios": results,
    }


def _one_line(result: dict[str, Any]) -> str:
    if result["status"] != "ok":
        return f"{result['status']}: {result.get('reason', '')}"
    parts = []
    if "servers" in result:
        parts.append(", ".join(f"{label} {s['qps']:,} qps" for label, s in
                               result["servers"].items()
                               if isinstance(s, dict) and isinstance(s.get("qps"), int)))
        parts.append(", ".join(f"{k} {v:.3f}" for k, v in result.get("ratios", {}).items()
                               if isinstance(v, int | float)))
    elif "p99_ms" in result:
        parts.append(f"p50 {result.get('p50_ms')} ms, p99 {result['p99_ms']} ms")
    for target in goals.normalize(result.get("targets"), ""):
        parts.append(f"{target['name'].lstrip(': ')}: {target['measured']} "
                     f"({'met' if target['met'] else 'not met'})")
    return "; ".join(part for part in parts if part) or "ok"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render:
        document = render(args.out)
        document["plot"] = plot.write(document, args.out / plot.NAME)
        (args.out / "results.json").write_text(json.dumps(document, indent=1) + "\n")
        (args.out / "RESULTS.md").write_text(report.markdown(document))
        print(f"wrote {args.out / 'RESULTS.md'} again from {args.out / 'results.json'}",
              file=sys.stderr)
        return 0
    if not dnsperf.available():
        print("benchmarks: dnsperf is not installed (Debian package dnsperf)", file=sys.stderr)
        return 2
    document = run(args)
    document["commit"] = history.commit()
    document["history"] = history.extend(args.out / "results.json", document,
                                         args.history_from)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        document["plot"] = plot.write(document, args.out / plot.NAME)
    except Exception:  # the figures are in results.json whatever the plot does
        traceback.print_exc()
        document["plot"] = None
    (args.out / "results.json").write_text(json.dumps(document, indent=1) + "\n")
    (args.out / "RESULTS.md").write_text(report.markdown(document))
    if document["plot"]:
        drawn = f" and {args.out / plot.NAME}"
    elif not plot.available():
        drawn = " (no plot: matplotlib is not installed; pip install '.[bench]')"
    else:
        drawn = " (no plot: no scenario measured servers with dnsperf)"
    print(f"wrote {args.out / 'RESULTS.md'} and {args.out / 'results.json'}{drawn}",
          file=sys.stderr)
    errors = [name for name, r in document["scenarios"].items() if r["status"] == "error"]
    if errors:
        print(f"benchmarks: scenarios failed: {', '.join(errors)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
