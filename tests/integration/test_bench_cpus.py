"""The benchmark's CPU pinning on a real process with several threads: every thread goes onto the
server CPUs while measured, and back where it was afterwards, threads born meanwhile included."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks import cpus

# A process with a second thread at once, and a third when its stdin gets a line.
CHILD = """
import sys, threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("more", flush=True)
time.sleep(60)
"""


def masks(pid: int) -> dict[int, set[int]]:
    return {int(task): os.sched_getaffinity(int(task))
            for task in os.listdir(f"/proc/{pid}/task")}


def test_pinning_moves_every_thread_and_puts_them_back() -> None:
    plan = cpus.plan()
    if plan is None:
        pytest.skip("one CPU: nothing to pin apart")
    assert plan.client.isdisjoint(plan.servers)
    assert plan.client | plan.servers == os.sched_getaffinity(0)
    with subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "ready"
            before = masks(child.pid)
            assert len(before) >= 2
            with cpus.pinned([child.pid], plan.servers):
                assert set(map(frozenset, masks(child.pid).values())) == {plan.servers}
                child.stdin.write("go\n")
                child.stdin.flush()
                assert child.stdout.readline().strip() == "more"
                during = masks(child.pid)
                assert len(during) == len(before) + 1
                assert all(mask == plan.servers for mask in during.values())
            after = masks(child.pid)
            original = before[child.pid]
            assert all(after[task] == before.get(task, original) for task in after)
        finally:
            child.kill()


def test_dnsperf_runs_on_the_client_cpus() -> None:
    argv = cpus.client_command(["sh", "-c", "grep Cpus_allowed_list /proc/self/status"],
                               frozenset({0}))
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30)
    assert done.stdout.split()[-1] == "0"
    assert cpus.client_command(["true"], None) == ["true"]
