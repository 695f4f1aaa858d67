"""A real Unbound (Debian package ``unbound``) on loopback, as the reference resolver.

It runs in the foreground with its default local zones, the iterator only (no validator, so no
trust anchor is fetched), and one forward zone for the root pointing at a loopback server of the
test's: whatever it cannot answer itself goes there, never off the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.proc import stop
from tests.support.upstream import wait_answering

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"


@dataclass
class Unbound:
    host: str
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def unbound(forward_to: str, *server_lines: str) -> Iterator[Unbound]:
    """Unbound on 127.0.0.1:PORT forwarding everything it does not hold to ``forward_to``
    (``ADDR:PORT``); ``server_lines`` are extra lines of its ``server:`` clause."""
    if not os.path.exists(UNBOUND):
        if os.environ.get("CI") == "true":
            raise RuntimeError("unbound is not installed (tests/setup.sh installs it)")
        pytest.skip("unbound is not installed (Debian package unbound)")
    host, _, upstream_port = forward_to.rpartition(":")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="protocol-unbound-"))
    config = workdir / "unbound.conf"
    config.write_text("\n".join([
        "server:",
        f"  interface: 127.0.0.1@{port}",
        f"  port: {port}",
        "  do-daemonize: no", '  username: ""', '  chroot: ""', f'  directory: "{workdir}"',
        '  pidfile: ""', "  use-syslog: no", '  logfile: ""', "  verbosity: 1", "  do-ip6: no",
        '  module-config: "iterator"', "  do-not-query-localhost: no",
        "  access-control: 127.0.0.0/8 allow",
        *(f"  {line}" for line in server_lines),
        "forward-zone:", '  name: "."', f"  forward-addr: {host}@{upstream_port}", "",
    ]))
    log_path = workdir / "unbound.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([UNBOUND, "-d", "-c", str(config)], stdout=log_file,
                                   stderr=subprocess.STDOUT)
    try:
        try:
            wait_answering("127.0.0.1", port, name="localhost", process=process)
        except RuntimeError as err:
            raise RuntimeError(f"{err}:\n{log_path.read_text(errors='replace')}") from None
        yield Unbound("127.0.0.1", port, log_path)
    finally:
        stop(process)
        shutil.rmtree(workdir, ignore_errors=True)
