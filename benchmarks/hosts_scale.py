"""A hosts file of a million lines (issue 16): dockdns against Unbound holding the same names as
``local-data``, in one run.

For each server: seconds from exec to the first answer of the file's last name (everything
loaded), resident memory once it answers and its peak (VmHWM), and what a one-line change
costs while a client asks a local name about every millisecond over a real UDP socket (every
tenth question the changed name, whose first answer shows the change applied): the longest
silence (the widest gap between consecutive answers, the 1 ms pacing included), the p99 and
slowest latency, queries lost, and the time until the change is answered.

dockdns's change is a version of the file with one line different moved into place (as an
editor saves it; made before the clock starts; dockdns polls once a second, so up to a second
passes before it reads it). Unbound's
are both of its ways: ``unbound-control local_data`` (its incremental path) and
``unbound-control reload`` (reading everything again, what a changed config file needs).

Run alone: ``flock /tmp/dockdns-measure.lock python3 -m benchmarks.hosts_scale [--lines N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dnslib

from benchmarks import goals, servers, workload
from benchmarks.scenarios import LOOPBACK, Context, upstream

LINES = 1_000_000
SMOKE_LINES = 10_000  # a smoke run's file
START_TIMEOUT = 300.0  # a million names on a busy 2-core machine
PACE = 0.001  # the client's pause between queries
QUERY_TIMEOUT = 1.0  # a query unanswered this long counts as lost (the gap goes on)
BASELINE = 1.0  # seconds of queries before the change
AFTER = 2.0  # seconds of queries after the change is answered
APPLY_TIMEOUT = 60.0  # a change not answered by then: reported as not applied
MAX_QUERIES = 200_000  # the client loop's bound, whatever the timings
CHANGED = "changed.bench.test"
CHANGED_ADDRESS = "10.255.0.1"


# --- pure helpers --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Sample:
    sent: float  # monotonic seconds
    answered: float | None  # None: lost
    changed: bool = False  # the question was for the changed name (not the steady one)
    records: int = 0  # answer records in the reply


def quantile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank quantile of sorted values (NaN for none)."""
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def silence(samples: Sequence[Sample], start: float, stop: float) -> dict[str, Any]:
    """What the client saw of the queries sent in [start, stop]: the widest gap between
    consecutive answers (a lost query's time counts as silence until the next answer), the
    p99 and slowest latency, the count sent and lost; times in ms."""
    window = [s for s in samples if start <= s.sent <= stop]
    latencies = sorted((s.answered - s.sent) * 1000 for s in window if s.answered is not None)
    answers = sorted(s.answered for s in window if s.answered is not None)
    edges = [start, *answers] if answers else [start, stop]
    gaps = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    return {
        "queries": len(window),
        "lost": sum(1 for s in window if s.answered is None),
        "max_silence_ms": round(max(gaps, default=0.0) * 1000, 2),
        "p99_ms": round(quantile(latencies, 0.99), 3),
        "max_ms": round(latencies[-1], 3) if latencies else None,
    }


def unbound_config(port: int, control_port: int, forward_port: int, local_data: Path) -> str:
    """An Unbound serving one loopback port, one thread, its local data from ``local_data``
    (included), remote control on loopback without certificates, and every other name
    forwarded to the harness's upstream on loopback (nothing leaves the machine)."""
    return "\n".join([
        "server:",
        f"  interface: {LOOPBACK}@{port}",
        f"  port: {port}",
        "  num-threads: 1",
        "  do-daemonize: no",
        '  chroot: ""',
        '  username: ""',
        '  pidfile: ""',
        '  logfile: ""',
        "  use-syslog: no",
        "  verbosity: 0",
        "  access-control: 127.0.0.0/8 allow",
        "  do-not-query-localhost: no",
        f'  directory: "{local_data.parent}"',
        f'  include: "{local_data}"',
        "remote-control:",
        "  control-enable: yes",
        f"  control-interface: {LOOPBACK}",
        f"  control-port: {control_port}",
        "  control-use-cert: no",
        "forward-zone:",
        '  name: "."',
        f"  forward-addr: {LOOPBACK}@{forward_port}",
        "",
    ])


def write_local_data(path: Path, count: int) -> Path:
    """The hosts file's names as Unbound ``local-data`` lines under one static zone."""
    with path.open("w") as handle:
        handle.write(f'  local-zone: "{workload.LOCAL_ZONE}." static\n')
        for index in range(count):
            handle.write(f'  local-data: "{workload.local_name(index)}. A '
                         f'{workload.address(index)}"\n')
    return path


def with_line_changed(path: Path, index: int, line: str) -> Path:
    """A copy of ``path`` beside it with line ``index`` replaced, made in advance so that the
    change itself is one rename (and the measuring process does no work while it measures)."""
    data = path.read_bytes()
    start = 0
    for _ in range(index):
        start = data.index(b"\n", start) + 1
    end = data.index(b"\n", start)
    fresh = path.with_name(path.name + ".new")
    fresh.write_bytes(data[:start] + line.encode() + data[end:])
    return fresh


# --- processes -----------------------------------------------------------------------------

def status_mb(pid: int, key: str) -> float:
    """A ``/proc/PID/status`` memory line (VmRSS, VmHWM) in MB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Started:
    process: subprocess.Popen[bytes]
    port: int
    first_answer_s: float
    notes: list[str] = field(default_factory=list)


def _answers(port: int, name: str, timeout: float = 0.2) -> bool:
    reply = servers.query(LOOPBACK, port, name, timeout=timeout)
    return reply is not None and bool(reply.rr)


@contextlib.contextmanager
def started(name: str, argv: list[str], port: int, probe: str,
            log_dir: Path) -> Iterator[Started]:
    """Run ``argv``; yield once ``probe`` is answered, with the seconds that took."""
    log = log_dir / f"hosts-scale-{name}-{port}.log"
    begun = time.monotonic()
    with log.open("wb") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                   cwd=servers.REPO)
    try:
        deadline = begun + START_TIMEOUT
        while not _answers(port, probe):
            if process.poll() is not None:
                raise servers.ServerError(f"{name} exited with {process.returncode}:\n"
                                          f"{log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise servers.ServerError(f"{name} did not answer {probe} within "
                                          f"{START_TIMEOUT:g} s")
            time.sleep(0.01)
        yield Started(process, port, time.monotonic() - begun)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=servers.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Client:
    """Asks about every millisecond over one UDP socket, in a thread, bounded: the steady name,
    and every tenth question the changed one (whose first answer shows the change applied)."""

    def __init__(self, port: int, steady: str, changed: str) -> None:
        self.samples: list[Sample] = []
        self.applied = threading.Event()
        self._port = port
        self._packets = [bytearray(dnslib.DNSRecord.question(name, "A").pack())
                         for name in (steady, changed)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hosts-scale-client",
                                        daemon=True)

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((LOOPBACK, self._port))
            sock.settimeout(QUERY_TIMEOUT)
            for number in range(MAX_QUERIES):
                if self._stop.is_set():
                    break
                changed = number % 10 == 9
                packet = self._packets[changed]
                packet[0:2] = (number & 0xFFFF).to_bytes(2, "big")
                sent = time.monotonic()
                sock.send(packet)
                answered: float | None = None
                records = 0
                with contextlib.suppress(TimeoutError):
                    while True:  # a late reply to an earlier query is skipped
                        reply = sock.recv(4096)
                        if reply[:2] == packet[:2]:
                            answered = time.monotonic()
                            records = int.from_bytes(reply[6:8], "big")
                            break
                self.samples.append(Sample(sent, answered, changed, records))
                if changed and records:
                    self.applied.set()
                time.sleep(PACE)

    def applied_at(self, after: float) -> float | None:
        return next((s.answered for s in self.samples
                     if s.changed and s.records and s.answered and s.sent >= after), None)

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=QUERY_TIMEOUT + 5)


def _measure_change(server: Started, pid: int, change: Callable[[], None],
                    label: str) -> dict[str, Any]:
    """Run the client, make ``change`` after a baseline, wait until the changed name is
    answered, go on a little; what the client saw from the change to the end."""
    with Client(server.port, workload.local_name(1), CHANGED) as client:
        time.sleep(BASELINE)
        begun = time.monotonic()
        change()
        made = time.monotonic()
        client.applied.wait(APPLY_TIMEOUT)
        time.sleep(AFTER)
        stopped = time.monotonic()
    applied = client.applied_at(begun)
    seen = silence(client.samples, begun, stopped)
    baseline = silence(client.samples, begun - BASELINE, begun)
    return {
        "change": label,
        "change_call_s": round(made - begun, 3),
        "applied_after_s": round(applied - begun, 3) if applied is not None else None,
        **seen,
        "baseline_p99_ms": baseline["p99_ms"],
        "peak_rss_mb": round(status_mb(pid, "VmHWM"), 1),
        "rss_after_mb": round(status_mb(pid, "VmRSS"), 1),
    }


def _settled_rss(pid: int) -> float:
    time.sleep(1.0)  # whatever it frees after answering (a parse's temporaries) is freed
    return round(status_mb(pid, "VmRSS"), 1)


# --- the scenario --------------------------------------------------------------------------

def hosts_scale(ctx: Context, lines: int | None = None) -> dict[str, Any]:
    """dockdns and Unbound holding the same ``lines`` names (LINES, SMOKE_LINES in a smoke run):
    start, memory, a one-line change."""
    if lines is None:
        lines = SMOKE_LINES if ctx.smoke else LINES
    hosts = workload.write_hosts(ctx.work / f"hosts-{lines}", lines)
    local_data = write_local_data(ctx.work / f"unbound-local-{lines}.conf", lines)
    probe = workload.local_name(lines - 1)
    middle = lines // 2
    results: dict[str, dict[str, Any]] = {}

    port = servers.free_port()
    argv = [sys.executable, "-m", "resolver", "serve", "--listen", f"{LOOPBACK}:{port}",
            "--metrics-listen", f"{LOOPBACK}:{servers.free_port()}", "--log-level", "warning",
            "--hosts-file", str(hosts), "--upstream", f"{LOOPBACK}:{ctx.upstream_port}",
            "--no-docker", "--no-special-names"]
    with started("dockdns", argv, port, probe, ctx.log_dir) as dockdns:
        pid = dockdns.process.pid
        rss = _settled_rss(pid)
        peak_start = round(status_mb(pid, "VmHWM"), 1)
        fresh = with_line_changed(hosts, middle, f"{CHANGED_ADDRESS} {CHANGED}")
        change = _measure_change(dockdns, pid, lambda: os.replace(fresh, hosts),
                                 "one line of the file changed (a new version moved into place)")
        results["dockdns"] = {"first_answer_s": round(dockdns.first_answer_s, 2),
                              "rss_mb": rss, "peak_rss_start_mb": peak_start,
                              "one_line_change": change}

    port, control = servers.free_port(), servers.free_port()
    conf = ctx.work / "unbound-hosts-scale.conf"
    conf.write_text(unbound_config(port, control, ctx.upstream_port, local_data))
    with started("unbound", ["unbound", "-d", "-c", str(conf)], port, probe,
                 ctx.log_dir) as unbound:
        pid = unbound.process.pid
        rss = _settled_rss(pid)
        peak_start = round(status_mb(pid, "VmHWM"), 1)

        def control_command(*args: str) -> Callable[[], None]:
            def run() -> None:
                subprocess.run(["unbound-control", "-c", str(conf), *args], check=True,
                               capture_output=True, timeout=APPLY_TIMEOUT)
            return run

        incremental = _measure_change(
            unbound, pid, control_command("local_data", f"{CHANGED}. A {CHANGED_ADDRESS}"),
            "unbound-control local_data")
        control_command("local_data_remove", f"{CHANGED}.")()
        # A reload reads the config again: the changed name must be in it to be answered.
        with local_data.open("a") as handle:
            handle.write(f'  local-data: "{CHANGED}. A {CHANGED_ADDRESS}"\n')
        reload = _measure_change(unbound, pid, control_command("reload"),
                                 "unbound-control reload (the config read again)")
        results["unbound"] = {"first_answer_s": round(unbound.first_answer_s, 2),
                              "rss_mb": rss, "peak_rss_start_mb": peak_start,
                              "one_line_change": incremental, "reload": reload}

    result: dict[str, Any] = {
        "status": "ok",
        "lines": lines,
        "servers": results,
        "cpu_ratios": {},
    }
    restate(result)
    return result


def restate(result: dict[str, Any]) -> None:
    """Ratios, figures and targets from the servers' figures ``result`` holds (also applied to a
    stored results.json by ``benchmarks.run --render``)."""
    ours, theirs = result["servers"]["dockdns"], result["servers"]["unbound"]
    change = ours["one_line_change"]
    result["ratios"] = {
        "first_answer dockdns/unbound": round(ours["first_answer_s"] / theirs["first_answer_s"],
                                              3),
        "rss dockdns/unbound": round(ours["rss_mb"] / theirs["rss_mb"], 3),
    }
    result["figures"] = [
        goals.figure("dockdns: longest silence while one line changes (ms)",
                     change["max_silence_ms"], "a client asking every ~1 ms"),
        goals.figure("dockdns: p99 latency while one line changes (ms)", change["p99_ms"]),
        goals.figure("dockdns: queries lost while one line changes", change["lost"]),
        goals.figure("dockdns: peak RSS while one line changes (MB)", change["peak_rss_mb"]),
        goals.figure("unbound: longest silence, local_data of one name (ms)",
                     theirs["one_line_change"]["max_silence_ms"], "unbound-control"),
        goals.figure("unbound: longest silence, reload (ms)",
                     theirs["reload"]["max_silence_ms"], "unbound-control reload"),
    ]
    result["targets"] = [
        goals.at_most("hosts_silence", "hosts_scale: longest silence during a one-line change",
                      change["max_silence_ms"], 10, " ms"),
        goals.at_most("hosts_rss", "hosts_scale: RSS, dockdns / Unbound (local-data)",
                      result["ratios"]["rss dockdns/unbound"], 1.0),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=LINES)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dockdns-hosts-scale-") as work:
        ctx = Context(Path(work), seconds=1.0, rounds=1, propagation_starts=0)
        with upstream(ctx):
            print(json.dumps(hosts_scale(ctx, args.lines), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
