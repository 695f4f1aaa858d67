"""benchmarks/schedstat.py against real processes: a busy one is seen on a CPU and a sleeping one
blocking, a process born during the window counts from zero and one that exits keeps its last
reading, the CPU table adds up, and medians combine runs figure by figure."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from benchmarks import schedstat

BUSY = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
SLEEPER = "import time\nfor _ in range(20): time.sleep(0.01)\n"


def spawn(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "30"])
    yield process
    process.kill()
    process.wait()


def test_a_reading_has_every_thread_of_the_process() -> None:
    reading = schedstat.read(os.getpid())
    assert reading is not None
    assert os.getpid() in reading.threads
    assert set(reading.threads) == {int(tid) for tid in os.listdir(f"/proc/{os.getpid()}/task")}
    assert reading.totals().run_ns > 0
    assert schedstat.read(2**22 + 1) is None  # above pid_max: no such process


def test_busy_and_sleeping_processes_and_those_that_come_and_go(
        sleeper: subprocess.Popen[bytes]) -> None:
    watched: dict[int, str] = {sleeper.pid: "sleeper"}
    watch = schedstat.Watch(lambda: dict(watched), interval=0.02)
    watch.start()
    busy = spawn(BUSY)  # born after the start: everything it does is in the window
    napper = spawn(SLEEPER)
    watched[busy.pid] = "busy"
    watched[napper.pid] = "napper"
    busy.wait()
    napper.wait()  # both exit before the window ends: their last readings count
    watch.stop()
    groups = watch.groups()
    assert groups["busy"].run_ns >= 0.1e9  # it spun ~0.3 s of CPU; seen up to its last reading
    # Both paid an interpreter's start (tens of ms, more on a loaded machine); only the busy one
    # spun 0.3 s beyond it. A ratio of the two would hang on how slow the start was.
    assert groups["busy"].run_ns > groups["napper"].run_ns + 0.15e9
    assert groups["napper"].voluntary > groups["busy"].voluntary  # it blocked in each sleep
    assert groups["sleeper"].run_ns < groups["busy"].run_ns
    summary = watch.summary(threads_of=("busy",))
    assert summary["processes"]["busy"]["threads"]["main"]["cores"] > 0
    assert summary["processes"]["napper"]["threads"] == {}  # not asked for
    assert set(summary["cpus"]) == {str(cpu) for cpu in schedstat.cpu_times()}


def test_cpu_shares_add_up_to_the_window() -> None:
    watch = schedstat.Watch(dict)
    watch.start()
    busy = spawn(BUSY)
    busy.wait()
    watch.stop()
    for shares in watch.cpus().values():
        # Every tick of the window is in one column; ticks are coarse (10 ms) at both ends.
        assert 0.5 < sum(shares.values()) < 1.5
    assert sum(cpu["busy"] for cpu in watch.summary()["cpus"].values()) > 0


def test_processes_lists_this_one_with_its_parent() -> None:
    found = {pid: (name, parent) for pid, name, parent in schedstat.processes()}
    assert found[os.getpid()][1] == os.getppid()
    child = subprocess.Popen(["sleep", "5"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the fork has exec'd sleep
            found = {pid: (name, parent) for pid, name, parent in schedstat.processes()}
            if found.get(child.pid, ("", 0))[0] == "sleep":
                break
            time.sleep(0.01)
        assert found[child.pid] == ("sleep", os.getpid())
    finally:
        child.kill()
        child.wait()


def test_median_of_runs_counts_a_missing_group_as_idle() -> None:
    def run(cores: float, with_b: bool) -> dict[str, object]:
        processes = {"a": {"cores": cores, "delay_ms_per_s": 10 * cores,
                           "threads": {"main": {"cores": cores, "delay_ms_per_s": 1.0}}}}
        if with_b:
            processes["b"] = {"cores": 1.0, "threads": {}}
        return {"seconds": 4.0, "processes": processes,
                "cpus": {"0": {"busy": cores, "system": 0.1, "softirq": 0.0}}}

    merged = schedstat.median([run(0.2, True), run(0.4, False), run(0.9, True)])
    assert merged["processes"]["a"]["cores"] == 0.4
    assert merged["processes"]["a"]["delay_ms_per_s"] == 4.0
    assert merged["processes"]["a"]["threads"]["main"]["cores"] == 0.4
    assert merged["processes"]["b"]["cores"] == 1.0  # 1, 0, 1
    assert merged["processes"]["a"]["voluntary_per_s"] == 0
    assert merged["cpus"]["0"]["busy"] == 0.4
    assert schedstat.median([]) == {}
