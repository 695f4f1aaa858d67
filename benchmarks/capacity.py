"""Nothing lost at capacity (issue 16): dnsperf at its limit against dockdns serving 10,000 local
names, about a million queries a run, several runs; per run the queries lost, and the kernel's UDP
counters during it, so that a loss shows where it happened.

Where a query can be lost on loopback, and the counter that says so:

- dockdns's receive buffer overflowed while it was busy (or not scheduled): its socket's
  ``drops`` in /proc/net/udp, and ``RcvbufErrors`` (with ``InErrors``) in /proc/net/snmp;
- dnsperf's receive buffer overflowed with replies it had not read yet: the ``drops`` of
  dnsperf's own sockets (read while it runs, since they close with it); not dockdns's loss, but
  lost all the same, so it is shown apart;
- a send failed for want of room (``SndbufErrors``) or was refused, on either side;
- the per-CPU input queue loopback hands packets through was full: the second column of
  /proc/net/softnet_stat.

The machine's counters (/proc/net/snmp, softnet_stat) count every socket, the other load on the
machine included; the per-socket ones count only the two ends measured. dnsperf runs unpinned,
as a user's load generator would, with 200 queries outstanding (twice its default): what it can
send when nothing holds it back.

Measured here (2 cores shared with other work; before = the kernel's default 212,992-byte buffer,
after = ``--udp-buffer`` 4M, runs alternating): before, 207 of 20 million queries lost, in every
one of 20 runs (2-22 each), every one an RcvbufError at dockdns's own socket, none at dnsperf's
and none in softnet; after, 0 of 20 million. The receive queue's high-water mark, read every
20 ms, was 166,400 bytes either way: 200 queries at 832 bytes of the kernel's accounting each,
all dnsperf had outstanding, which with what the kernel keeps charged for datagrams already read
is past what the default buffer admits.

``python3 -m benchmarks.capacity [RUNS]`` runs this alone and prints the summary as JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import dnsperf, scenarios, servers, workload
from benchmarks.servers import Server

REGISTRY = 10_000
OUTSTANDING = 200  # dnsperf -q: twice its default; beyond this it gains no throughput here
# Queries a run: dnsperf passes through the 1,000-name mix this many times (about a million).
PASSES = 1000
SAMPLE_INTERVAL = 0.02  # how often dnsperf's sockets are read while it runs
RUN_BOUND = 600.0  # seconds one dnsperf run may take at most (a million queries take ~10-20)

SNMP = Path("/proc/net/snmp")
SOFTNET = Path("/proc/net/softnet_stat")
UDP_TABLES = (Path("/proc/net/udp"), Path("/proc/net/udp6"))
# The Udp: counters of /proc/net/snmp that say where datagrams went.
UDP_FIELDS = ("InDatagrams", "NoPorts", "InErrors", "OutDatagrams", "RcvbufErrors",
              "SndbufErrors", "InCsumErrors", "MemErrors")
_SOCKET_LINK = re.compile(r"socket:\[(\d+)\]")


# --- the kernel's counters -----------------------------------------------------------------------

def udp_counters(path: Path = SNMP) -> dict[str, int]:
    """The machine's (this network namespace's) UDP counters from /proc/net/snmp."""
    lines = [line.split() for line in path.read_text().splitlines() if line.startswith("Udp:")]
    if len(lines) < 2:
        return {}
    named = dict(zip(lines[0][1:], (int(value) for value in lines[1][1:]), strict=False))
    return {key: named[key] for key in UDP_FIELDS if key in named}


def softnet_dropped(path: Path = SOFTNET) -> int:
    """Packets dropped because a CPU's input queue (net.core.netdev_max_backlog) was full."""
    with contextlib.suppress(OSError):
        return sum(int(line.split()[1], 16) for line in path.read_text().splitlines()
                   if len(line.split()) > 1)
    return 0


@dataclass(frozen=True)
class SocketRow:
    inode: int
    port: int  # the local port
    rx_queue: int  # bytes waiting to be read (as the kernel accounts them: truesize)
    drops: int


def udp_sockets() -> dict[int, SocketRow]:
    """Every UDP socket of this namespace by inode, from /proc/net/udp and udp6."""
    rows: dict[int, SocketRow] = {}
    for table in UDP_TABLES:
        with contextlib.suppress(OSError):
            for line in table.read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) < 13:
                    continue
                port = int(fields[1].rsplit(":", 1)[1], 16)
                rx_queue = int(fields[4].split(":")[1], 16)
                inode = int(fields[9])
                rows[inode] = SocketRow(inode, port, rx_queue, int(fields[12]))
    return rows


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` holds open."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                match = _SOCKET_LINK.fullmatch(os.readlink(f"/proc/{pid}/fd/{fd}"))
                if match:
                    found.add(int(match.group(1)))
    return found


def server_socket(pids: list[int], port: int) -> SocketRow | None:
    """The UDP socket on ``port`` that one of ``pids`` holds (the server's listening socket)."""
    held = set().union(*(socket_inodes(pid) for pid in pids))
    rows = [row for row in udp_sockets().values() if row.port == port and row.inode in held]
    return rows[0] if rows else None


@dataclass
class ClientWatch:
    """dnsperf's sockets read every ``SAMPLE_INTERVAL`` while it runs: the drops of each (the
    highest seen; a counter only grows) and the fullest receive queue seen on either end."""

    pid: int
    server_inode: int | None
    drops: dict[int, int] = field(default_factory=dict)
    client_queue_max: int = 0
    server_queue_max: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_INTERVAL)

    def sample(self) -> None:
        mine = socket_inodes(self.pid)
        rows = udp_sockets()
        for inode in mine:
            row = rows.get(inode)
            if row is not None:
                self.drops[inode] = max(self.drops.get(inode, 0), row.drops)
                self.client_queue_max = max(self.client_queue_max, row.rx_queue)
        if self.server_inode is not None and self.server_inode in rows:
            self.server_queue_max = max(self.server_queue_max, rows[self.server_inode].rx_queue)
        self.samples += 1

    def stop(self) -> None:
        self._stop.set()


# --- one run ----------------------------------------------------------------------------------

def command(server: Server, queries: Path, passes: int) -> list[str]:
    """dnsperf at its limit: no -v (a line per query costs it speed), unpinned."""
    return [dnsperf.DNSPERF, "-s", server.host, "-p", str(server.port), "-d", str(queries),
            "-n", str(passes), "-q", str(OUTSTANDING), "-c", str(dnsperf.CLIENTS),
            "-T", str(dnsperf.THREADS), "-t", str(dnsperf.TIMEOUT)]


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after}


def measure(server: Server, queries: Path, passes: int) -> dict[str, Any]:
    """One dnsperf run with the counters read around it."""
    listening = server_socket(server.pids, server.port)
    cpu_before = server.cpu_seconds()
    snmp_before, softnet_before = udp_counters(), softnet_dropped()
    with tempfile.NamedTemporaryFile("w+b", prefix="dnsperf-", suffix=".out") as out:
        process = subprocess.Popen(command(server, queries, passes), stdout=out,
                                   stderr=subprocess.PIPE)
        watch = ClientWatch(process.pid, listening.inode if listening else None)
        sampler = threading.Thread(target=watch.run, name="dnsperf-sockets", daemon=True)
        sampler.start()
        try:
            _, stderr = process.communicate(timeout=RUN_BOUND)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        finally:
            watch.stop()
            sampler.join(timeout=5)
        if process.returncode != 0:
            raise dnsperf.DnsperfError(f"dnsperf exited {process.returncode}: "
                                       f"{stderr.decode(errors='replace').strip()}")
        result = dnsperf.parse(Path(out.name))
    used = server.cpu_seconds() - cpu_before
    snmp = _delta(udp_counters(), snmp_before)
    after = server_socket(server.pids, server.port)
    server_drops = (after.drops - listening.drops) if after and listening else None
    return {
        "sent": result.sent,
        "completed": result.completed,
        "lost": result.lost,
        "qps": round(result.qps),
        "avg_ms": round(result.avg_ms, 3),
        "runtime_s": round(result.runtime_s, 2),
        "rcodes": result.rcodes,
        "cpu_us_per_query": (round(used * 1e6 / result.completed, 3)
                             if result.completed else None),
        # Where datagrams were dropped, during this run.
        "server_socket_drops": server_drops,
        "client_socket_drops": sum(watch.drops.values()),
        "server_queue_max_bytes": watch.server_queue_max,
        "client_queue_max_bytes": watch.client_queue_max,
        "udp": snmp,
        "softnet_dropped": softnet_dropped() - softnet_before,
        "samples": watch.samples,
    }


# --- the scenario ------------------------------------------------------------------------------

def runs_and_passes(ctx: scenarios.Context) -> tuple[int, int]:
    # A smoke run's runs are a tenth as long: enough to show the harness works, not enough to
    # measure a rare loss.
    return max(1, ctx.rounds), PASSES // 10 if ctx.smoke else PASSES


def measure_runs(server: Server, queries: Path, runs: int, passes: int) -> list[dict[str, Any]]:
    # One unmeasured pass first: every name of the mix in the memo, as in the other scenarios.
    dnsperf.run(server.host, server.port, queries, None, passes=1)
    return [measure(server, queries, passes) for _ in range(runs)]


def summarize(runs: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    lost = sum(run["lost"] for run in runs)
    totals: dict[str, int] = {}
    for run in runs:
        for key, value in run["udp"].items():
            totals[key] = totals.get(key, 0) + value
    server_drops = [run["server_socket_drops"] for run in runs]
    return {
        "status": "ok",
        **extra,
        "outstanding": OUTSTANDING,
        "runs_count": len(runs),
        "sent": sum(run["sent"] for run in runs),
        "lost": lost,
        "lost_per_run": [run["lost"] for run in runs],
        "server_socket_drops": (sum(server_drops) if None not in server_drops else None),
        "client_socket_drops": sum(run["client_socket_drops"] for run in runs),
        "udp": totals,
        "softnet_dropped": sum(run["softnet_dropped"] for run in runs),
        "runs": runs,
        "targets": {"lost": {"goal": "lost == 0", "value": lost, "met": lost == 0}},
    }


def capacity(ctx: scenarios.Context) -> dict[str, Any]:
    """dnsperf at its limit, unpinned, against dockdns with 10,000 local names: ``ctx.rounds``
    runs of about a million queries each; what was lost, and where."""
    if not dnsperf.available():
        raise scenarios.Skip("dnsperf is not installed")
    hosts = workload.write_hosts(ctx.work / "capacity-hosts", REGISTRY)
    names = [workload.local_name(i) for i in workload.mix_indexes(REGISTRY)]
    queries = workload.write_queries(ctx.work / "capacity-queries", names)
    probe = workload.local_name(0)
    runs, passes = runs_and_passes(ctx)
    with servers.dockdns("dockdns", scenarios.LOOPBACK, servers.free_port(),
                         ["--hosts-file", str(hosts), *ctx.upstream], probe,
                         ctx.log_dir) as dockdns:
        scenarios.expect(dockdns, scenarios.samples(REGISTRY, workload.local_name,
                                                    workload.address))
        measured = measure_runs(dockdns, queries, runs, passes)
    return summarize(measured, {"registry_names": REGISTRY, "mix_names": len(set(names)),
                                "queries_per_run": passes * len(names)})


@contextlib.contextmanager
def _standalone(rounds: int, seconds: float) -> Iterator[scenarios.Context]:
    with tempfile.TemporaryDirectory(prefix="dockdns-capacity-") as work:
        ctx = scenarios.Context(Path(work), seconds, rounds, 0, None)
        with scenarios.upstream(ctx):
            yield ctx


def main(argv: list[str]) -> int:
    rounds = int(argv[0]) if argv else 4
    with _standalone(rounds, 4.0) as ctx:
        print(json.dumps(capacity(ctx), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
