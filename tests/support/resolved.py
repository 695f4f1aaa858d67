"""A real systemd-resolved in a namespace of its own, for the resolved integration tests.

``tests/setup.sh`` extracts Debian's systemd-resolved package into RESOLVED_ROOT (never
installed: the machine's own resolver stays as it is); ``resolved_ns.sh`` starts it with its own
dbus-daemon in a private mount and network namespace. Commands run inside with ``run``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.support.daemon import REPO, command
from tests.support.engine import wait_for
from tests.support.proc import stop

RESOLVED_ROOT = Path(os.environ.get("DOCKDNS_TEST_RESOLVED_ROOT",
                                    "/var/cache/dockdns-test/systemd-resolved"))
SCRIPT = Path(__file__).with_name("resolved_ns.sh")
START_SECONDS = 20.0


@dataclass
class ResolvedNamespace:
    pid: int  # a process in the namespace (nsenter's target)
    dir: Path
    root: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def resolvectl(self) -> str:
        return str(self.root / "usr/bin/resolvectl")

    def argv(self, *argv: str) -> list[str]:
        # In the repository, so that ``python3 -m resolver`` is this checkout's.
        return ["nsenter", "-t", str(self.pid), "-m", "-n", f"--wd={REPO}", *argv]

    def run(self, *argv: str, timeout: float = 30, check: bool = False
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*argv), capture_output=True, text=True, timeout=timeout,
                              check=check)

    def popen(self, *argv: str, log: Path) -> subprocess.Popen[bytes]:
        """Start ``argv`` in the namespace (nsenter execs it: the pid is its own); it is stopped
        with the namespace if it is still running then."""
        with log.open("wb") as handle:
            process = subprocess.Popen(self.argv(*argv), stdout=handle,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def dockdns(self, listen: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
        """``dockdns serve`` in the namespace with ``--resolved on``, its default upstream the
        stub (DIR/resolv.conf), once it serves."""
        (self.dir / "resolv.conf").write_text("nameserver 127.0.0.53\n")
        process = self.popen(*command("serve", "--listen", listen, "--resolved", "on",
                                      "--resolv-conf", str(self.dir / "resolv.conf"),
                                      "--no-metrics", "--log-level", "debug", "--log-queries",
                                      *args), log=log)
        wait_for(lambda: process.poll() is not None or "dockdns serving on" in log.read_text(),
                 message="dockdns start")
        assert process.poll() is None, log.read_text()
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            stop(process, timeout=15)

    @property
    def docker_socket(self) -> Path | None:
        path = self.dir / "docker.sock"
        return path if path.exists() else None


def require_resolved() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("root")
    for tool in ("unshare", "nsenter", "dbus-daemon", "dnsmasq", "dig", "ip"):
        if shutil.which(tool) is None:
            problems.append(tool)
    if not (RESOLVED_ROOT / "lib/systemd/systemd-resolved").exists():
        problems.append(f"systemd-resolved extracted in {RESOLVED_ROOT} (tests/setup.sh)")
    if problems:
        message = "resolved tests need " + ", ".join(problems)
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _docker_socket() -> str:
    """The path of the engine's socket the Docker tests use (DOCKER_HOST or the default)."""
    url = os.environ.get("DOCKER_HOST", "unix:///run/docker.sock")
    return url.removeprefix("unix://") if url.startswith("unix://") else "/run/docker.sock"


@contextlib.contextmanager
def resolved_namespace() -> Iterator[ResolvedNamespace]:
    require_resolved()
    scratch = Path(tempfile.mkdtemp(prefix="dockdns-host-resolved-"))
    with (scratch / "ns.log").open("wb") as log:
        process = subprocess.Popen(
            ["unshare", "-m", "-n", "--propagation", "private", "bash", str(SCRIPT),
             str(RESOLVED_ROOT), str(scratch), _docker_socket()],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not (scratch / "ready").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                logs = [scratch / "ns.log", scratch / "resolved.log"]
                raise RuntimeError("systemd-resolved namespace did not start:\n" + "".join(
                    path.read_text(errors="replace") for path in logs if path.exists()))
            time.sleep(0.1)
        namespace = ResolvedNamespace(process.pid, scratch, RESOLVED_ROOT)
        try:
            yield namespace
        finally:
            namespace.stop_all()
    finally:
        pids = (scratch / "pids").read_text().split() if (scratch / "pids").exists() else []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
        shutil.rmtree(scratch, ignore_errors=True)
