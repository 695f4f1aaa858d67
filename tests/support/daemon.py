"""Run the real ``dockdns serve`` as a subprocess on a free loopback port, for socket tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.rcode

from tests.support.net import addresses, ask, free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunningDaemon:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    metrics_port: int | None = None  # the HTTP port of /metrics, /healthz, /readyz (or None)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def sees(self, name: str) -> set[str]:
        """The addresses the daemon answers for ``name`` over UDP; none unless NOERROR."""
        reply = ask(self.host, self.port, name)
        return addresses(reply) if reply.rcode() == dns.rcode.NOERROR else set()


def _wait_listening(host: str, port: int, process: subprocess.Popen[bytes], log: Path,
                    timeout: float) -> None:
    deadline = time.monotonic() + timeout
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dockdns exited with {process.returncode}:\n{log.read_text()}")
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"dockdns did not start listening on {port}:\n{log.read_text()}")


def http_get(port: int, path: str, host: str = "127.0.0.1", timeout: float = 5.0,
             headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """GET ``path`` from the daemon's metrics port: (status, content type, body)."""
    request = urllib.request.Request(f"http://{host}:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return (response.status, response.headers.get("Content-Type", ""),
                    response.read().decode())
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "resolver", *args]


@contextlib.contextmanager
def dockdns(*args: str, host: str = "127.0.0.1", port: int | None = None,
            docker: bool = False, start_timeout: float = 20.0,
            env: dict[str, str] | None = None, metrics: bool = True,
            cwd: Path = REPO) -> Iterator[RunningDaemon]:
    """Start ``dockdns serve`` with ``args`` (plus --listen and, unless docker, --no-docker),
    as ``python3 -m resolver`` from ``cwd`` (the packages there are the ones that run).

    Each daemon gets its own free metrics port (``RunningDaemon.metrics_port``), or
    ``--no-metrics`` with ``metrics=False``: many daemons run at once, and the default port 9153
    could be taken.
    Every test that can reach the forwarder must pass ``--upstream`` on loopback itself. As a
    safety net the default upstreams are read from an empty file instead of the host's
    /etc/resolv.conf, so a test that forgets gets SERVFAIL rather than traffic off the machine.
    The suite's upstreams serve zones under ``.test`` (the name RFC 6761 reserves for testing),
    which dockdns answers NXDOMAIN itself by default: the environment turns special names off,
    and a test of them passes ``--special-names`` (a flag outranks the environment).
    """
    port = port or free_port(host)
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    argv = command("serve", "--listen", listen, "--log-level", "debug", *args)
    if not docker:
        argv.append("--no-docker")
    metrics_port = free_port("127.0.0.1") if metrics else None
    if metrics_port is None:
        argv.append("--no-metrics")
    else:
        argv += ["--metrics-listen", f"127.0.0.1:{metrics_port}"]
    with tempfile.NamedTemporaryFile("wb", prefix="dockdns-", suffix=".log",
                                     delete=False) as log_file:
        log_path = Path(log_file.name)
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, cwd=cwd,
                                   env={**os.environ, "DOCKDNS_RESOLV_CONF": os.devnull,
                                        # Never register with a host's own resolved.
                                        "DOCKDNS_RESOLVED": "off",
                                        "DOCKDNS_SPECIAL_NAMES": "false",
                                        **(env or {})})
    try:
        _wait_listening(host, port, process, log_path, start_timeout)
        if metrics_port is not None:
            _wait_listening("127.0.0.1", metrics_port, process, log_path, start_timeout)
        yield RunningDaemon(process, host, port, log_path, metrics_port)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(OSError):
            log_path.unlink()
