"""Running dnsperf (Debian's) and reading what it reports, per-query latencies included.

dnsperf 2.10 prints no percentiles, so every run is made with ``-v``: one line per query with its
latency, from which p50/p99 are taken. That costs dnsperf a few per cent of its own speed, the
same for every server measured, so ratios are unaffected.
"""

from __future__ import annotations

import collections
import re
import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import cpus as cpus_module

DNSPERF = "dnsperf"
# dnsperf's own default of 100 queries outstanding (-q) is "the default load" of the targets;
# four client sockets on one thread is the recipe the reference numbers came from.
CLIENTS = 4
THREADS = 1
# dnsperf's default -q: the load every scenario runs at unless it says otherwise.
OUTSTANDING = 100
# Seconds dnsperf waits for an answer before it counts the query as lost (its default is 5).
TIMEOUT = 2

_SUMMARY = {
    "sent": re.compile(r"Queries sent:\s+(\d+)"),
    "completed": re.compile(r"Queries completed:\s+(\d+)"),
    "lost": re.compile(r"Queries lost:\s+(\d+)"),
    "qps": re.compile(r"Queries per second:\s+([\d.]+)"),
    "avg": re.compile(r"Average Latency \(s\):\s+([\d.]+)"),
    "runtime": re.compile(r"Run time \(s\):\s+([\d.]+)"),
}
_RCODES = re.compile(r"Response codes:\s*(.*)")


class DnsperfError(Exception):
    """dnsperf did not run or printed no statistics."""


@dataclass
class PerfResult:
    qps: float
    sent: int
    completed: int
    lost: int
    avg_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    runtime_s: float
    rcodes: dict[str, int] = field(default_factory=dict)
    # How much of a core dnsperf itself used: near 1.0 (its one thread flat out) means the client
    # set the pace.
    client_cores: float | None = None
    # Filled in by the caller, which knows the server's processes.
    cpu_us_per_query: float | None = None
    rss_mb: float | None = None


def available() -> bool:
    return shutil.which(DNSPERF) is not None


def percentile(histogram: collections.Counter[int], fraction: float) -> int:
    """The smallest bucket at or below which ``fraction`` of the samples lie."""
    total = sum(histogram.values())
    if total == 0:
        return 0
    wanted = fraction * total
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= wanted:
            return bucket
    return max(histogram)


def parse(output_path: Path) -> PerfResult:
    """Read a ``dnsperf -v`` output file: the per-query lines, then the statistics."""
    latencies: collections.Counter[int] = collections.Counter()  # microseconds -> count
    summary: dict[str, float] = {}
    rcodes: dict[str, int] = {}
    with output_path.open(errors="replace") as handle:
        for line in handle:
            if line.startswith("> "):
                latency = line.rsplit(" ", 1)[1]
                if latency[:1].isdigit():  # lost queries ("> T name type") have none
                    latencies[int(float(latency) * 1e6)] += 1
                continue
            for key, pattern in _SUMMARY.items():
                found = pattern.search(line)
                if found:
                    summary[key] = float(found.group(1))
            found = _RCODES.search(line)
            if found:
                for code, count in re.findall(r"([A-Z]+) (\d+)", found.group(1)):
                    rcodes[code] = int(count)
    missing = [key for key in _SUMMARY if key not in summary]
    if missing:
        raise DnsperfError(f"dnsperf printed no {', '.join(missing)}: see {output_path}")
    return PerfResult(
        qps=summary["qps"], sent=int(summary["sent"]), completed=int(summary["completed"]),
        lost=int(summary["lost"]), avg_ms=summary["avg"] * 1e3,
        p50_ms=percentile(latencies, 0.50) / 1e3, p99_ms=percentile(latencies, 0.99) / 1e3,
        max_ms=(max(latencies) if latencies else 0) / 1e3, runtime_s=summary["runtime"],
        rcodes=rcodes)


def command(server: str, port: int, queries: Path, seconds: float | None,
            passes: int | None = None, netns_pid: int | None = None,
            cpus: frozenset[int] | None = None, outstanding: int | None = None) -> list[str]:
    argv = [DNSPERF, "-s", server, "-p", str(port), "-d", str(queries), "-c", str(CLIENTS),
            "-T", str(THREADS), "-t", str(TIMEOUT), "-v"]
    if outstanding is not None:  # dnsperf's own default is OUTSTANDING
        argv += ["-q", str(outstanding)]
    if seconds is not None:
        argv += ["-l", f"{seconds:g}"]
    if passes is not None:
        argv += ["-n", str(passes)]
    if netns_pid is not None:  # run inside a container's network namespace
        argv = ["nsenter", "-t", str(netns_pid), "-n", "--", *argv]
    return cpus_module.client_command(argv, cpus)


def run(server: str, port: int, queries: Path, seconds: float | None,
        passes: int | None = None, netns_pid: int | None = None,
        cpus: frozenset[int] | None = None, outstanding: int | None = None) -> PerfResult:
    """One dnsperf run for ``seconds`` or ``passes`` through the file, whichever ends first
    (bounded either way), on ``cpus`` if given, with ``outstanding`` queries at most in
    flight (dnsperf's default of 100 if None)."""
    argv = command(server, port, queries, seconds, passes, netns_pid, cpus, outstanding)
    bound = (seconds or 0) + TIMEOUT + 60
    with tempfile.NamedTemporaryFile("w+b", prefix="dnsperf-", suffix=".out") as out:
        before = _children_cpu()
        done = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, timeout=bound,
                              check=False)
        used = _children_cpu() - before  # nsenter execs dnsperf: the same child either way
        if done.returncode != 0:
            raise DnsperfError(f"{' '.join(argv)} exited {done.returncode}: "
                               f"{done.stderr.decode(errors='replace').strip()}")
        result = parse(Path(out.name))
        if result.runtime_s > 0:
            result.client_cores = round(used / result.runtime_s, 3)
        return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
