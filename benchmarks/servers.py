"""The servers under test as processes: start, wait until they answer, read their CPU and memory,
stop. dockdns and dnsmasq are started here on loopback ports; Docker's embedded DNS lives in
dockerd, whose process is only observed."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dnslib

REPO = Path(__file__).resolve().parents[1]
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 60.0  # a 100,000-name registry on a busy 2-core machine takes a few seconds
STOP_TIMEOUT = 10.0


_LOG_NUMBERS = itertools.count(1)


class ServerError(Exception):
    """A server did not start or did not answer."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as tcp, \
                socket.socket(family, socket.SOCK_DGRAM) as udp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind((host, port))
            except OSError:
                continue
            return port
    raise ServerError("no free port")


def query(host: str, port: int, name: str, qtype: str = "A",
          timeout: float = 0.5) -> dnslib.DNSRecord | None:
    """One UDP query; the parsed reply, or None if none came in time."""
    packet = dnslib.DNSRecord.question(name, qtype).pack()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, (host, port))
            return dnslib.DNSRecord.parse(sock.recv(65535))
        except (TimeoutError, ConnectionRefusedError):
            return None


def children(pid: int) -> list[int]:
    """The direct children of ``pid``, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            # The command name is in parentheses and may hold spaces: split after it.
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append(int(entry))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return ticks / TICKS_PER_SECOND


def rss_mb(pids: list[int]) -> float:
    """Resident memory of the processes together (shared pages counted in each)."""
    kib = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
    return kib / 1024


@dataclass
class Server:
    """One server under test: where it answers and which processes do the work."""

    name: str
    host: str
    port: int
    pids: list[int] = field(default_factory=list)
    netns_pid: int | None = None  # query it from inside this process's network namespace
    startup_s: float | None = None  # from exec to its first answer

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pids)

    def rss_mb(self) -> float:
        return rss_mb(self.pids)


def _wait_answering(process: subprocess.Popen[bytes], host: str, port: int, probe: str,
                    log: Path, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"{process.args!r} exited with {process.returncode}:\n"
                              f"{log.read_text(errors='replace')[-2000:]}")
        if query(host, port, probe, timeout=0.2) is not None:
            return
        time.sleep(0.05)
    raise ServerError(f"{process.args!r} did not answer on {host}:{port} within {timeout:g} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def managed(name: str, argv: list[str], host: str, port: int, probe: str, log_dir: Path,
            ready_lines: int = 0) -> Iterator[tuple[subprocess.Popen[bytes], Server]]:
    """``argv`` started with its output in ``log_dir``, yielded once it answers ``probe`` on
    ``host:port`` (and, with ``ready_lines``, once its log says "serving on" that often), and
    stopped (SIGTERM, then SIGKILL) afterwards."""
    log = log_dir / f"{name}-{port}-{next(_LOG_NUMBERS)}.log"
    started = time.monotonic()
    with log.open("wb") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        _wait_answering(process, host, port, probe, log)
        # Several workers: each logs once when it serves; wait for all of them.
        deadline = time.monotonic() + START_TIMEOUT
        while log.read_text(errors="replace").count("serving on") < ready_lines:
            if time.monotonic() > deadline or process.poll() is not None:
                raise ServerError(f"{name}: not every worker started:\n{log.read_text()}")
            time.sleep(0.05)
        server = Server(name, host, port, [process.pid], startup_s=time.monotonic() - started)
        yield process, server
    finally:
        _stop(process)


@contextlib.contextmanager
def dockdns(name: str, host: str, port: int, args: list[str], probe: str, log_dir: Path,
            workers: int = 1, docker: bool = False) -> Iterator[Server]:
    """``dockdns serve`` from this tree. Callers always pass an ``--upstream`` on loopback."""
    # Metrics stay on, as in production (their cost is part of what is measured), each server on
    # a port of its own: several may run at once, and 9153 may be taken.
    argv = [sys.executable, "-m", "resolver", "serve", "--listen", f"{host}:{port}",
            "--metrics-listen", f"127.0.0.1:{free_port()}",
            "--log-level", "warning" if workers == 1 else "info", *args]
    # The workloads' zones are under .test, which dockdns would otherwise answer NXDOMAIN itself.
    argv.append("--no-special-names")
    if workers > 1:
        argv += ["--workers", str(workers)]
    if not docker:
        argv.append("--no-docker")
    # Only when several workers log "serving on" (at info level) is there something to count.
    with managed(name, argv, host, port, probe, log_dir,
                  ready_lines=workers if workers > 1 else 0) as (process, server):
        if workers > 1:
            server.pids = children(process.pid)  # the workers do the work, not the supervisor
        yield server


@contextlib.contextmanager
def dnsmasq(name: str, host: str, port: int, args: list[str], probe: str,
            log_dir: Path) -> Iterator[Server]:
    """Debian's dnsmasq in the foreground, bound to one loopback address, no /etc files."""
    argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
            f"--listen-address={host}", f"--port={port}", "--pid-file=",
            "--log-facility=-", *args]
    with managed(name, argv, host, port, probe, log_dir) as (_, server):
        yield server


def addresses_in_netns(netns_pid: int, host: str, port: int, name: str) -> list[str] | None:
    """The A addresses ``host`` gives for ``name``, asked with dig from inside a container's
    network namespace (as its client would); None if no reply came."""
    done = subprocess.run(["nsenter", "-t", str(netns_pid), "-n", "--", "dig", f"@{host}",
                           "-p", str(port), name, "A", "+tries=1", "+time=2", "+short"],
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        return None
    return sorted(done.stdout.split())


def dockerd_pid() -> int | None:
    """The engine's process (its embedded DNS runs inside it), for CPU accounting."""
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/var/run/docker.pid").read_text().strip())
    return None
