"""The issue's targets judged against one run's results, and RESULTS.md written from them."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import dnsperf, goals, history

REPO = Path(__file__).resolve().parents[1]

RSS_LIMIT_MB = 100.0
PROPAGATION_LIMIT_MS = 100.0
# Issue 15: with a zone's only upstream marked down, a new name is answered within this.
DEAD_ANSWER_LIMIT_MS = 50.0

# A server using less than this share of a core was waiting for dnsperf, not working flat out.
SATURATED = 0.85


def cores(server: dict[str, Any]) -> float | None:
    """How much of a core a server used while measured: CPU per query times queries a second."""
    cpu = server.get("cpu_us_per_query")
    return None if cpu is None else cpu * server["qps"] / 1e6


def _pace(result: dict[str, Any], ours: str, theirs: str) -> str:
    """Why the QPS ratio of one comparison came out as it did, in the run's own numbers."""
    servers = result["servers"]
    a, b = servers[ours], servers[theirs]
    used_a, used_b = cores(a), cores(b)
    spread = ", ".join(f"{label} {min(r['qps'] for r in s['runs']):,.0f}-"
                       f"{max(r['qps'] for r in s['runs']):,.0f}" for label, s in servers.items())
    cost = (f"Per query {ours} needed {_fmt(a['cpu_us_per_query'])} µs of CPU and {theirs} "
            f"{_fmt(b['cpu_us_per_query'])} µs (CPU ratio "
            f"{_fmt(result.get('cpu_ratios', {}).get(f'{ours}/{theirs}'), 3)}).")
    client = a.get("dnsperf_cores")
    if used_a is not None and used_a < SATURATED:
        if client is not None and client >= SATURATED:
            pace = (f"dnsperf set the pace, not {ours}: {ours} used {used_a:.2f} of a core "
                    f"while dnsperf's one thread used {client:.2f}")
        else:
            pace = (f"neither {ours} ({used_a:.2f} of a core) nor dnsperf ({_fmt(client)}) "
                    f"worked flat out: the machine's other load took the rest")
        return (f"{pace}, so the QPS ratio reflects the client and the machine as much as the "
                f"servers (QPS per round: {spread}). {cost}")
    return (f"{ours} ran flat out ({_fmt(used_a)} of a core, {theirs} "
            f"{_fmt(used_b)}). {cost}")


FASTER_CLIENT = ("Where dnsperf shares a core with the server (--no-pin, or a 1-CPU machine), a "
                 "client that can outrun the server, so that CPU per query decides. Past that, "
                 "less CPU per query: the system calls are already batched (recvmmsg/sendmmsg, "
                 "64 datagrams a call); what is left is the kernel's own work per datagram, "
                 "which every server pays, and about a microsecond of Python per query. On a "
                 "host with cores to spare, --workers N.")


def _cache_cost(scenarios: dict[str, Any]) -> str:
    """How each server's cache hits compare with its local names, in this run's numbers."""
    def cpu(scenario: str, label: str) -> float | None:
        value = _get(scenarios, scenario, "servers", label, "cpu_us_per_query")
        return value if isinstance(value, (int, float)) else None

    parts = []
    for label in ("dockdns", "dnsmasq"):
        local, cached = cpu("local_names", label), cpu("cache_hits", label)
        if local is not None and cached is not None:
            parts.append(f"{label} {_fmt(cached)} µs per cache hit and {_fmt(local)} per local "
                         "name")
    return (" Cache hits are memo hits, renewed in place as their TTLs tick (one re-render per "
            "name and second, not the full path)" + (": " + "; ".join(parts) if parts else "")
            + ".")


def explain(key: str, scenarios: dict[str, Any]) -> tuple[str, str]:
    """Why a target was missed and what would close it, from profiling the daemon and from this
    run's numbers. Shown only next to a missed target."""
    if key == "local_vs_dnsmasq":
        return _pace(scenarios["local_names"], "dockdns", "dnsmasq"), FASTER_CLIENT
    if key == "local_vs_docker":
        return _pace(scenarios["container_names"], "dockdns", "docker"), FASTER_CLIENT
    if key == "cache_vs_dnsmasq":
        return (_pace(scenarios["cache_hits"], "dockdns", "dnsmasq") + _cache_cost(scenarios),
                FASTER_CLIENT)
    if key == "scaling":
        return ("Nothing on the memo path grows with the registry (the memo holds what clients "
                "ask, not what the registry holds); what differs is memory and cache pressure "
                "from the larger heap, and noise.",
                "Fewer objects per name (records as tuples, addresses as bytes) would shrink the "
                "heap; compare the CPU-per-query ratios first.")
    if key == "rss":
        return ("Every registry name is several Python objects (record, name set, tuples, "
                "strings) and every distinct question a memo entry.",
                "Fewer objects per name (records as tuples, addresses as bytes).")
    if key == "lost":
        return ("Queries went unanswered: the socket's receive buffer overflowed while the "
                "server was busy, or an answer took longer than dnsperf's timeout.",
                "A larger receive buffer (net.core.rmem_max; dockdns asks for 4 MB) and the "
                "memo filled before load (a miss costs ~50 µs on the full path).")
    return ("The time from the engine's event to the snapshot swap: the event thread, the "
            "container inspection and rebuilding the registry.",
            "Inspect only the started container and rebuild only its records.")


@dataclass
class Target:
    key: str
    name: str
    goal: str
    value: float | None  # None: not measured in this run
    met: bool | None
    shortfall: str = ""
    why: str = ""
    closes: str = ""


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _at_least(key: str, name: str, value: float | None, goal: float, unit: str = "x") -> Target:
    if value is None:
        return Target(key, name, f">= {goal:g}{unit}", None, None)
    met = value >= goal
    shortfall = "" if met else f"{(goal - value) / goal:.1%} short ({value:g}{unit})"
    return Target(key, name, f">= {goal:g}{unit}", value, met, shortfall)


def _below(key: str, name: str, value: float | None, limit: float, unit: str) -> Target:
    if value is None:
        return Target(key, name, f"< {limit:g} {unit}", None, None)
    met = value < limit
    shortfall = "" if met else f"{(value - limit) / limit:.1%} over ({value:g} {unit})"
    return Target(key, name, f"< {limit:g} {unit}", value, met, shortfall)


def _healthy_misses(scenarios: dict[str, Any]) -> float | None:
    """Queries of the healthy zone lost or not NOERROR while the dead zone was flooded."""
    flooded = _get(scenarios, "dead_upstream", "servers", "with dead-zone flood")
    if flooded is None:
        return None
    return float(flooded["lost"] + flooded["sent"] - flooded["lost"]
                 - flooded["rcodes"].get("NOERROR", 0))


# Scenarios every server of which is a dockdns (the others label theirs "dockdns").
ALL_DOCKDNS = ("registry_scaling", "workers", "dead_upstream")


def dockdns_runs(scenarios: dict[str, Any]) -> list[dict[str, Any]]:
    """Every summary of a dockdns server measured at dnsperf's default load in the run (a
    scenario that says it ran at another ``outstanding`` judges its own losses)."""
    found = []
    for name, result in scenarios.items():
        if result.get("outstanding", dnsperf.OUTSTANDING) != dnsperf.OUTSTANDING:
            continue
        for label, summary in (_get(result, "servers") or {}).items():
            # Only dnsperf summaries count their losses (see _standard).
            if (name in ALL_DOCKDNS or label == "dockdns") and _standard({label: summary}):
                found.append(summary)
    return found


def declared(scenarios: dict[str, Any]) -> list[Target]:
    """The targets scenarios declare in their own results (see benchmarks/goals.py)."""
    found = []
    for name, result in scenarios.items():
        if not isinstance(result, dict):
            continue
        for target in goals.normalize(result.get("targets"), name):
            value = target["measured"]
            found.append(Target(
                key=target["key"], name=target["name"], goal=target["goal"],
                value=float(value) if value is not None else None, met=target["met"],
                shortfall=str(target.get("shortfall", "")), why=str(target.get("why", "")),
                closes=str(target.get("closes", ""))))
    return found


def targets(scenarios: dict[str, Any]) -> list[Target]:
    rss = _get(scenarios, "local_names", "servers", "dockdns", "rss_mb")
    runs = dockdns_runs(scenarios)
    lost = sum(s["lost"] for s in runs) if runs else None
    found = [
        _at_least("local_vs_dnsmasq", "local names vs dnsmasq",
                  _get(scenarios, "local_names", "ratios", "dockdns/dnsmasq"), 1.0),
        _at_least("local_vs_docker", "container names vs Docker's 127.0.0.11",
                  _get(scenarios, "container_names", "ratios", "dockdns/docker"), 2.0),
        _at_least("cache_vs_dnsmasq", "cache hits vs dnsmasq",
                  _get(scenarios, "cache_hits", "ratios", "dockdns/dnsmasq"), 1.0),
        _at_least("scaling", "100,000 names vs 10 names",
                  _get(scenarios, "registry_scaling", "ratios", "100000/10"), 0.9),
        _below("rss", "dockdns RSS with 10,000 names", rss, RSS_LIMIT_MB, "MB"),
        _below("lost", "queries lost by dockdns at dnsperf's default load",
               None if lost is None else float(lost), 1, "queries"),
        _below("propagation", "propagation p99",
               _get(scenarios, "propagation", "p99_ms"), PROPAGATION_LIMIT_MS, "ms"),
        _below("dead_new_names", "dead upstream marked: slowest of 100 new names",
               _get(scenarios, "dead_upstream", "max_ms"), DEAD_ANSWER_LIMIT_MS, "ms"),
        _below("healthy_zone", "healthy zone beside a dead zone's flood: not answered NOERROR",
               _healthy_misses(scenarios), 1, "queries"),
    ]
    for target in found:
        if target.met is False:
            target.why, target.closes = explain(target.key, scenarios)
    return found + declared(scenarios)


# --- the machine ------------------------------------------------------------------------------

def _first_line(argv: list[str], pattern: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        found = re.search(pattern, done.stdout + done.stderr)
        if found:
            return found.group(1)
    return "unknown"


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dnsperf": _first_line(["dnsperf", "-h"], r"Version ([\d.]+)"),
        "dnsmasq": _first_line(["dnsmasq", "--version"], r"version ([\d.]+)"),
        "knot": _first_line(["knotd", "--version"], r"version ([\d.]+)"),
        "unbound": _first_line(["unbound", "-V"], r"Version ([\d.]+)"),
        "nsd": _first_line(["nsd", "-v"], r"version ([\d.]+)"),
        "docker": _first_line(["docker", "version", "-f", "{{.Server.Version}}"],
                              r"^(\S+)"),
        "dockdns_build": dockdns_build(),
    }


_BUILD_PROBE = "from resolver.ops import buildinfo; print(buildinfo.per_query().describe())"


def dockdns_build() -> str:
    """Which build of dockdns this tree runs (setup.py): the figures depend on it."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run([sys.executable, "-c", _BUILD_PROBE], capture_output=True,
                              text=True, timeout=30, check=True, cwd=REPO)
        return done.stdout.strip() or "unknown"
    return "unknown"


# --- RESULTS.md -------------------------------------------------------------------------------

def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _server_table(servers: dict[str, Any]) -> list[str]:
    lines = ["| server | QPS | QPS range | avg ms | p99 ms | lost / sent | rcodes | CPU µs/query "
             "| cores used | dnsperf cores | RSS MB | startup s |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for label, s in servers.items():
        rcodes = ", ".join(f"{code} {count:,}" for code, count in sorted(s["rcodes"].items()))
        low = min(r["qps"] for r in s["runs"])
        high = max(r["qps"] for r in s["runs"])
        lines.append(
            f"| {label} | {_fmt(s['qps'])} | {low:,.0f}-{high:,.0f} | {_fmt(s['avg_ms'], 3)} "
            f"| {_fmt(s['p99_ms'], 3)} | {_fmt(s['lost'])} / {_fmt(s['sent'])} | {rcodes} "
            f"| {_fmt(s['cpu_us_per_query'])} | {_fmt(cores(s))} "
            f"| {_fmt(s.get('dnsperf_cores'))} | {_fmt(s['rss_mb'], 1)} "
            f"| {_fmt(s['startup_s'])} |")
    return lines


TITLES = {
    "local_names": "Local names: 10,000 names (hosts file, zone, local-data), 1,000-name mix",
    "cache_hits": "Cache hits on forwarded names (same local upstream)",
    "forwarded_misses": "Forwarded misses: a new name every query",
    "container_names": "Container names from a client container's namespace",
    "registry_scaling": "Registry size: 10 vs 10,000 vs 100,000 names",
    "workers": "Workers: --workers 1 vs 2 (10,000 names)",
    "propagation": "Propagation: container start event to its name answering",
    "churn": "Churn: container starts and stops beside 10,000 names",
    "dead_upstream": "A dead upstream: a dead zone's new names, and a healthy zone beside it",
    "capacity": "Nothing lost at capacity",
    "hosts_scale": "Hosts files at scale",
    "swarm_calls": "Swarm: engine API calls",
}
# What a result may hold that is rendered on its own (the rest of a new scenario's scalar
# values are shown as a table of their own).
STRUCTURE = {"status", "reason", "title", "servers", "ratios", "cpu_ratios", "figures",
             "targets", "notes"}


def _pinning_line(pinning: str | None) -> str:
    if pinning is None:
        return ("- CPUs: not pinned (`--no-pin`): the scheduler split the cores between dnsperf "
                "and each server as their threads asked.")
    return (f"- CPUs: {pinning}, for every measurement (Docker's engine threads too, put back "
            "afterwards): each server gets the same cores whatever its threading, and dnsperf "
            "never competes with it (see benchmarks/cpus.py).")


def _standard(servers: dict[str, Any]) -> bool:
    """Summaries as Contender.summary() makes them (a dnsperf run per round)."""
    keys = ("qps", "avg_ms", "p99_ms", "lost", "sent", "rcodes", "runs")
    return all(isinstance(s, dict) and all(k in s for k in keys) for s in servers.values())


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _scalars(value: Any) -> bool:
    """A short list of plain values (e.g. losses per run), shown joined."""
    return isinstance(value, list) and len(value) <= 20 and all(_scalar(v) for v in value)


def _generic_table(servers: dict[str, Any]) -> list[str]:
    """Any per-server figures: one row per server, one column per scalar figure any has."""
    columns: list[str] = []
    for figures in servers.values():
        for key, value in (figures.items() if isinstance(figures, dict) else []):
            if _scalar(value) and key not in columns:
                columns.append(key)
    lines = ["| server | " + " | ".join(columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for label, figures in servers.items():
        row = figures if isinstance(figures, dict) else {}
        lines.append(f"| {label} | " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return lines


def _figures(figures: list[dict[str, Any]]) -> list[str]:
    out = []
    for figure in figures:
        note = f" ({figure['note']})" if figure.get("note") else ""
        out.append(f"- {figure['name']}: **{_fmt(figure.get('value'), 3)}**{note}")
    return out


def section(key: str, result: dict[str, Any]) -> list[str]:
    """One scenario's part of RESULTS.md, whatever the scenario (see STRUCTURE)."""
    title = result.get("title") or TITLES.get(key) or key.replace("_", " ").capitalize()
    out = ["", f"## {title}", ""]
    if result["status"] != "ok":
        out.append(f"{result['status']}: {result.get('reason', '')}")
        return out
    servers = result.get("servers")
    if isinstance(servers, dict) and servers:
        out += _server_table(servers) if _standard(servers) else _generic_table(servers)
        if result.get("ratios"):
            ratios = ", ".join(f"{name} = **{_fmt(value, 3)}**"
                               for name, value in result["ratios"].items())
            out += ["", f"QPS ratios: {ratios}"]
        if result.get("cpu_ratios"):
            cpu = ", ".join(f"{name} = {_fmt(value, 3)}"
                            for name, value in result["cpu_ratios"].items())
            out += ["", f"CPU-per-query ratios (above 1: the first is cheaper): {cpu}"]
        if "new_names" in result:
            out += ["", f"With the dead zone's only upstream marked down (after "
                    f"{result['marked_after']} names): {result['answered']} of "
                    f"{result['new_names']} new names answered ({result['rcodes']}), p50 "
                    f"**{_fmt(result['p50_ms'])} ms**, p99 {_fmt(result['p99_ms'])} ms, max "
                    f"**{_fmt(result['max_ms'])} ms**; the flood beside dnsperf sent "
                    f"{result['flood_sent']:,} dead-zone queries."]
    elif key == "propagation":
        out.append(f"{result['starts']} starts, {result['missed']} never answered: "
                   f"p50 **{_fmt(result['p50_ms'])} ms**, p99 **{_fmt(result['p99_ms'])} ms**"
                   f", max {_fmt(result['max_ms'])} ms")
    if key not in TITLES or key in ("capacity", "hosts_scale", "swarm_calls"):
        values = {k: v if _scalar(v) else ", ".join(_fmt(x) for x in v)
                  for k, v in result.items()
                  if k not in STRUCTURE and (_scalar(v) or _scalars(v))}
        if values:
            out += ["", "| figure | value |", "|---|---:|"]
            out += [f"| {k} | {_fmt(v, 3)} |" for k, v in values.items()]
    if result.get("figures"):
        out += ["", *_figures(result["figures"])]
    for target in goals.normalize(result.get("targets"), key):
        met = {True: "met", False: "**missed**", None: "not measured"}[target["met"]]
        out += ["", f"Target: {target['name']} {target['goal']}: measured "
                f"{_fmt(target['measured'], 3)}, {met}."]
    for note in result.get("notes", []):
        out += ["", f"Note: {note}"]
    # One blank line between blocks, whichever blocks this result had.
    return [line for number, line in enumerate(out)
            if line or number == 0 or out[number - 1]]


def _versions(m: dict[str, Any]) -> str:
    names = ("dnsperf", "dnsmasq", "knot", "unbound", "nsd", "docker")
    return ", ".join(f"{n} {m[n]}" for n in names if m.get(n) not in (None, "unknown"))


def markdown(document: dict[str, Any]) -> str:
    settings = document["settings"]
    m = document["machine"]
    load = document["load"]
    out = [
        "# dockdns benchmark results",
        "",
        "Written by `make bench` (`python3 -m benchmarks.run`); do not edit by hand.",
        "",
        f"- Date: {document['date']}" + (" (smoke run: numbers meaningless)"
                                         if settings["smoke"] else ""),
        f"- Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}; "
        + _versions(m),
        f"- dockdns: {m.get('dockdns_build', 'unknown')}",
        f"- Load average (1 min) before / after: {load['before']:.2f} / {load['after']:.2f}",
        f"- Each server: {settings['rounds']} rounds × {settings['seconds']:g} s of `dnsperf -c "
        f"{settings['clients']} -T {settings['threads']}` ({settings['outstanding']} queries "
        "outstanding, dnsperf's default, unless a scenario says otherwise), servers alternating "
        "within each round; figures are medians over the rounds, ratios the median of the "
        "per-round ratios.",
        "- dnsperf runs on the same machine: compare the ratios, not the absolute numbers. "
        "CPU µs/query is each server's own cost (dockerd's "
        "for Docker's resolver), and *cores used* (CPU per query × QPS) below "
        f"{SATURATED} means the server was waiting for dnsperf, not working flat out.",
        _pinning_line(settings.get("pinning")),
        "",
        "## Targets",
        "",
        "| target | goal | measured | met |",
        "|---|---|---:|---|",
    ]
    for t in document["targets"]:
        no = f"**no**: {t['shortfall']}" if t["shortfall"] else "**no**"
        met = {True: "yes", False: no, None: "not measured"}[t["met"]]
        out.append(f"| {t['name']} | {t['goal']} | {_fmt(t['value'], 3)} | {met} |")
    missed = [t for t in document["targets"] if t["met"] is False]
    if missed:
        out += ["", "### Missed targets", ""]
        for t in missed:
            out.append(f"- **{t['name']}**" + (f": {t['shortfall']}." if t["shortfall"] else ""))
            if t["why"]:
                out.append(f"  Why: {t['why']}")
            if t["closes"]:
                out.append(f"  What would close it: {t['closes']}")
    reported = [(key, f) for key, r in document["scenarios"].items()
                for f in (r.get("figures") or [] if r.get("status") == "ok" else [])]
    if reported:
        out += ["", "## Reported figures (no goal)", "", "| scenario | figure | value | note |",
                "|---|---|---:|---|"]
        out += [f"| {key} | {f['name']} | {_fmt(f.get('value'), 3)} | {f.get('note', '')} |"
                for key, f in reported]
    if document.get("plot"):
        out += ["", "## QPS and p99 per scenario and server", "",
                f"![QPS and p99 latency per scenario and server]({document['plot']})"]
    for key, result in document["scenarios"].items():
        try:
            out += section(key, result)
        except Exception as err:  # one odd result must not cost the run its report
            out += ["", f"## {key}", "", f"(could not be rendered: {type(err).__name__}: {err}; "
                    "see results.json)"]
    out += history.markdown(document)
    out.append("")
    return "\n".join(out)


def target_dicts(found: list[Target]) -> list[dict[str, Any]]:
    return [asdict(t) for t in found]
