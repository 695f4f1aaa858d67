"""Which CPUs dnsperf and the servers run on while they are measured.

dnsperf runs on the machine it measures, so client and server share its cores. Left to the
scheduler, how they share them depends on the server: a multi-threaded one (dockerd, whose
resolver is Go) takes whatever time the client leaves idle on the client's core, a
single-threaded one (dnsmasq, a dockdns worker) cannot, and the QPS ratio then measures the
client and the scheduler as much as the servers. Pinned, dnsperf has the first CPU to itself and
every server, whatever its threads, the same remaining CPUs: on a 2-core machine, one core each.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    client: frozenset[int]  # where dnsperf runs
    servers: frozenset[int]  # where the server being measured runs

    def describe(self) -> str:
        return f"dnsperf on CPU {_cpu_list(self.client)}, servers on CPU {_cpu_list(self.servers)}"


def plan() -> Plan | None:
    """The split of this process's CPUs, or None when there is only one to share."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return Plan(frozenset(available[:1]), frozenset(available[1:]))


def client_command(argv: list[str], cpus: frozenset[int] | None) -> list[str]:
    """``argv`` run on ``cpus`` (util-linux's taskset; the mask survives nsenter's exec)."""
    if cpus is None:
        return argv
    return ["taskset", "-c", _cpu_list(cpus), *argv]


def _tasks(pid: int) -> list[int]:
    try:
        return [int(task) for task in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


@contextlib.contextmanager
def pinned(pids: list[int], cpus: frozenset[int] | None) -> Iterator[None]:
    """Every thread of ``pids`` on ``cpus`` for the duration, then back where it was.

    Threads made meanwhile inherit the pinned mask from the thread that made them; on the way
    out they get their process's first mask, as if they had never been pinned. (Docker's engine
    is pinned like this while its resolver is measured, and must be left as it was found.)"""
    if cpus is None:
        yield
        return
    saved: dict[int, set[int]] = {}
    process_masks: dict[int, set[int]] = {}
    for pid in pids:
        for task in _tasks(pid):
            with contextlib.suppress(OSError):
                saved[task] = os.sched_getaffinity(task)
                process_masks.setdefault(pid, saved[task])
                os.sched_setaffinity(task, cpus)
    try:
        yield
    finally:
        for pid in pids:
            for task in _tasks(pid):
                mask = saved.get(task, process_masks.get(pid))
                if mask is not None:
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(task, mask)


def _cpu_list(cpus: frozenset[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))
