"""The churn scenario's placement of the engine (benchmarks/churn.py): while it is pinned, a
container started meanwhile runs with the engine on the client CPU; afterwards the engine and
that container's shim (which re-parents to init, out of reach of cpus.pinned's own restore) are
back on the engine's own CPUs. The benchmark itself is exercised by test_bench_smoke."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import churn, servers
from tests.support.engine import lab

pytestmark = pytest.mark.docker


def shim_of(container_id: str) -> int:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and \
                    container_id.encode() in argv:
                return int(entry)
    raise AssertionError(f"no shim for {container_id}")


def masks(pid: int) -> set[frozenset[int]]:
    return {frozenset(os.sched_getaffinity(int(task))) for task in os.listdir(f"/proc/{pid}/task")}


def test_the_engine_and_what_it_starts_meanwhile_go_back() -> None:
    available = frozenset(os.sched_getaffinity(0))
    if len(available) < 2:
        pytest.skip("one CPU: nothing to pin apart")
    client_cpu = frozenset({min(available)})
    dockerd = servers.dockerd_pid()
    if dockerd is None:
        pytest.skip("no /var/run/docker.pid: the engine's process is not known")
    engine_pids = churn._engine_pids()
    assert dockerd in engine_pids and len(engine_pids) >= 2  # dockerd and containerd
    before = {pid: masks(pid) for pid in engine_pids}
    with lab("bench-pin-", pool="10.248.0.0/16") as made:
        net = made.network("bench-pin-net")
        with churn.engine_on(client_cpu):
            assert masks(dockerd) == {client_cpu}
            box = made.container("bench-pin-box", net.name)
            shim = shim_of(box.id)
            assert masks(shim) == {client_cpu}  # inherited from the pinned containerd
            assert masks(box.pid) == {client_cpu}
        assert {pid: masks(pid) for pid in engine_pids} == before
        engine_mask = os.sched_getaffinity(dockerd)
        assert masks(shim) == {frozenset(engine_mask)}
        assert masks(box.pid) == {frozenset(engine_mask)}
        assert engine_mask != client_cpu
