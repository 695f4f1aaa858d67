"""--workers N: several real processes on the same addresses, started and stopped as one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.daemon import RunningDaemon, command, dockdns
from tests.support.net import addresses, ask, free_port

WORKERS = 2


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_workers(server: RunningDaemon) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.log().count("serving on") == WORKERS:
            return children(server.process.pid)
        time.sleep(0.05)
    raise AssertionError(f"not every worker started:\n{server.log()}")


def wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if alive(p)]}"
        time.sleep(0.05)


def test_workers_answer_udp_and_tcp_and_stop_together(hosts_file: str) -> None:
    with dockdns("--hosts-file", hosts_file, "--workers", str(WORKERS)) as server:
        workers = wait_workers(server)
        assert len(workers) == WORKERS
        # Every query from a new socket, so that the kernel spreads them over the workers.
        for _ in range(40):
            assert addresses(ask(server.host, server.port, "web1")) == {"10.1.2.3"}
        for _ in range(10):
            assert addresses(ask(server.host, server.port, "multi", tcp=True)) == {
                "10.1.2.4", "10.1.2.5"}
        server.signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0
        wait_gone(workers)
        assert server.log().count("dockdns stopped") == WORKERS


def test_a_worker_that_dies_takes_the_others_down(hosts_file: str) -> None:
    with dockdns("--hosts-file", hosts_file, "--workers", str(WORKERS)) as server:
        first, *others = wait_workers(server)
        os.kill(first, signal.SIGKILL)
        assert server.process.wait(timeout=15) != 0
        wait_gone(others)
        assert "stopping the others" in server.log()


def test_workers_die_with_their_supervisor(hosts_file: str) -> None:
    with dockdns("--hosts-file", hosts_file, "--workers", str(WORKERS)) as server:
        workers = wait_workers(server)
        server.signal(signal.SIGKILL)
        server.process.wait(timeout=15)
        wait_gone(workers)


def test_an_address_in_use_is_reported_before_any_worker_starts(hosts_file: str) -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", port))
        done = subprocess.run(
            command("serve", "--listen", f"127.0.0.1:{port}", "--no-docker", "--hosts-file",
                    hosts_file, "--workers", str(WORKERS)),
            capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "already in use" in done.stderr
    assert "started" not in done.stderr
