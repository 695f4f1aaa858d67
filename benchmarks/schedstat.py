"""Where processes' time went while they were measured, and where the machine's CPUs went.

Read from /proc, without tracing (nothing here slows what it watches):

- ``/proc/PID/task/TID/schedstat``: each thread's time on a CPU and its *run delay*, the time it
  was runnable but waiting for a CPU the scheduler had given to someone else;
- ``/proc/PID/task/TID/status``: voluntary context switches (the thread blocked: a socket with
  nothing to read, a lock, CPython's GIL condition variable) and involuntary ones (preempted);
- ``/proc/PID/stat``: user and system time including reaped children (a containerd shim reaps
  the runc it runs), for processes whose helpers come and go;
- ``/proc/stat``: each CPU's user, system, softirq, irq and idle time.

A ``Watch`` polls what it follows in a thread, because some of it does not live through the
whole window (dnsperf exits as its run ends, shims come and go with containers): each process
counts from its reading at the start, or from zero if it was born meanwhile, to its last reading.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# How often a Watch reads what it follows. A process that lives less than this between two
# readings is missed; dnsperf runs for seconds, a shim as long as its container.
POLL_INTERVAL = 0.1
# /proc/stat's columns after "cpuN", in order (proc(5)).
STAT_COLUMNS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True, slots=True)
class Thread:
    """One thread's counters, as read."""

    name: str
    run_ns: int
    delay_ns: int
    voluntary: int
    involuntary: int


@dataclass(frozen=True, slots=True)
class Reading:
    """One process at one moment: its live threads, and its CPU time with reaped children."""

    threads: dict[int, Thread]
    cpu_s: float  # utime + stime + cutime + cstime

    def totals(self) -> Thread:
        return _sum("", self.threads.values())


def _sum(name: str, threads: Iterable[Thread]) -> Thread:
    run = delay = voluntary = involuntary = 0
    for thread in threads:
        run += thread.run_ns
        delay += thread.delay_ns
        voluntary += thread.voluntary
        involuntary += thread.involuntary
    return Thread(name, run, delay, voluntary, involuntary)


def _thread(pid: int, tid: int) -> Thread | None:
    base = Path(f"/proc/{pid}/task/{tid}")
    try:
        run, delay, _ = (int(value) for value in (base / "schedstat").read_text().split())
        status = (base / "status").read_text()
    except (OSError, ValueError):
        return None  # the thread ended between listing and reading
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return Thread(fields.get("Name", "").strip(), run, delay,
                  int(fields.get("voluntary_ctxt_switches", 0)),
                  int(fields.get("nonvoluntary_ctxt_switches", 0)))


def read(pid: int) -> Reading | None:
    """``pid`` now; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tids = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return None
    # utime, stime, cutime, cstime: fields 14-17 of proc(5), 11-14 after the command name.
    cpu = sum(int(value) for value in stat[11:15]) / TICKS_PER_SECOND
    threads = {tid: found for tid in tids if (found := _thread(pid, tid)) is not None}
    return Reading(threads, cpu)


def cpu_times() -> dict[int, dict[str, int]]:
    """Each CPU's counters from /proc/stat, in ticks."""
    found: dict[int, dict[str, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            found[int(name[3:])] = dict(zip(STAT_COLUMNS, map(int, values), strict=False))
    return found


@dataclass
class Process:
    """What one followed process did in the window (all its threads together)."""

    run_ns: int = 0
    delay_ns: int = 0
    voluntary: int = 0
    involuntary: int = 0
    cpu_s: float = 0.0
    # Per thread: "main" (the thread the process started with: dockdns's event loop) and
    # the others by name (CPython's threads are all called after the program): run, delay (ns).
    threads: dict[str, list[int]] = field(default_factory=dict)


class Watch:
    """Follows processes chosen by ``members`` (re-evaluated at every reading, so newcomers are
    found) from ``start()`` to ``stop()``, grouped by the name ``members`` gives them."""

    def __init__(self, members: Callable[[], dict[int, str]],
                 interval: float = POLL_INTERVAL) -> None:
        self._members = members
        self._interval = interval
        self._first: dict[int, Reading] = {}
        self._last: dict[int, Reading] = {}
        self._group: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpus_before: dict[int, dict[str, int]] = {}
        self._cpus_after: dict[int, dict[str, int]] = {}
        self.started = self.stopped = 0.0

    def _poll(self, first: bool) -> None:
        for pid, group in self._members().items():
            reading = read(pid)
            if reading is None:
                continue
            if pid not in self._first:
                # Born meanwhile: everything it did is in the window.
                self._first[pid] = reading if first else Reading({}, 0.0)
                self._group[pid] = group
            self._last[pid] = reading

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._poll(first=False)

    def start(self) -> None:
        self._cpus_before = cpu_times()
        self.started = time.monotonic()
        self._poll(first=True)
        self._thread = threading.Thread(target=self._run, name="schedstat-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._poll(first=False)
        self.stopped = time.monotonic()
        self._cpus_after = cpu_times()

    @property
    def seconds(self) -> float:
        return max(self.stopped - self.started, 1e-9)

    def groups(self) -> dict[str, Process]:
        """Each group's counters over the window."""
        found: dict[str, Process] = {}
        for pid, last in self._last.items():
            first = self._first[pid]
            process = found.setdefault(self._group[pid], Process())
            process.cpu_s += last.cpu_s - first.cpu_s
            for tid, thread in last.threads.items():
                before = first.threads.get(tid, Thread(thread.name, 0, 0, 0, 0))
                run = thread.run_ns - before.run_ns
                delay = thread.delay_ns - before.delay_ns
                process.run_ns += run
                process.delay_ns += delay
                process.voluntary += thread.voluntary - before.voluntary
                process.involuntary += thread.involuntary - before.involuntary
                label = "main" if tid == pid else thread.name
                sums = process.threads.setdefault(label, [0, 0])
                sums[0] += run
                sums[1] += delay
        return found

    def cpus(self) -> dict[int, dict[str, float]]:
        """Each CPU's share of the window (0-1) by /proc/stat column."""
        shares: dict[int, dict[str, float]] = {}
        for cpu, after in self._cpus_after.items():
            before = self._cpus_before.get(cpu, {})
            shares[cpu] = {column: (after[column] - before.get(column, 0))
                           / TICKS_PER_SECOND / self.seconds for column in after}
        return shares

    def summary(self, threads_of: Iterable[str] = ()) -> dict[str, Any]:
        """JSON-ready: per group cores used (on a CPU, per second of the window), run delay and
        context switches per second, CPU with reaped children (and, for the groups named in
        ``threads_of``, cores and run delay per thread); per CPU its busy, system and softirq
        (with irq) shares."""
        span = self.seconds
        groups = {}
        detailed = set(threads_of)
        for name, process in sorted(self.groups().items()):
            threads = {thread: {"cores": round(run / 1e9 / span, 3),
                                "delay_ms_per_s": round(delay / 1e6 / span, 1)}
                       for thread, (run, delay) in sorted(process.threads.items())
                       if (run or delay) and name in detailed}
            groups[name] = {"cores": round(process.run_ns / 1e9 / span, 3),
                            "delay_ms_per_s": round(process.delay_ns / 1e6 / span, 1),
                            "voluntary_per_s": round(process.voluntary / span),
                            "involuntary_per_s": round(process.involuntary / span),
                            "cpu_cores_with_children": round(process.cpu_s / span, 3),
                            "threads": threads}
        machine = {}
        for cpu, shares in sorted(self.cpus().items()):
            busy = sum(value for column, value in shares.items()
                       if column not in ("idle", "iowait"))
            machine[str(cpu)] = {"busy": round(busy, 3),
                                 "system": round(shares.get("system", 0.0), 3),
                                 "softirq": round(shares.get("softirq", 0.0)
                                                  + shares.get("irq", 0.0), 3)}
        return {"seconds": round(span, 2), "processes": groups, "cpus": machine}


PROCESS_FIGURES = ("cores", "delay_ms_per_s", "voluntary_per_s", "involuntary_per_s",
                   "cpu_cores_with_children")
CPU_FIGURES = ("busy", "system", "softirq")


def median(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of several ``Watch.summary()`` results, figure by figure (a group or thread
    absent from a run counts as having done nothing in it)."""
    if not summaries:
        return {}
    groups = sorted({name for summary in summaries for name in summary["processes"]})
    processes: dict[str, Any] = {}
    for name in groups:
        runs = [summary["processes"].get(name, {}) for summary in summaries]
        merged: dict[str, Any] = {key: _median([run.get(key, 0) for run in runs])
                                  for key in PROCESS_FIGURES}
        labels = sorted({label for run in runs for label in run.get("threads", {})})
        merged["threads"] = {
            label: {key: _median([run.get("threads", {}).get(label, {}).get(key, 0)
                                  for run in runs]) for key in ("cores", "delay_ms_per_s")}
            for label in labels}
        processes[name] = merged
    cpus = sorted({cpu for summary in summaries for cpu in summary["cpus"]})
    return {"seconds": _median([summary["seconds"] for summary in summaries]),
            "processes": processes,
            "cpus": {cpu: {key: _median([summary["cpus"].get(cpu, {}).get(key, 0)
                                         for summary in summaries]) for key in CPU_FIGURES}
                     for cpu in cpus}}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    found = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return round(found, 3)


def processes() -> Iterator[tuple[int, str, int]]:
    """Every process now: its ID, command name and parent's ID."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            comm = stat.split("(", 1)[1].rsplit(")", 1)[0]
            yield int(entry), comm, int(stat.rsplit(")", 1)[1].split()[1])
