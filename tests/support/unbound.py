"""A real Unbound on loopback, as the reference resolver some tests compare dockdns with.

It forwards only where the test says (``forward-addr`` on loopback) and never to the root servers;
no validator, so no trust anchor is needed.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import pytest

from tests.support.net import ask, free_port


@contextlib.contextmanager
def unbound(forward: str, server_extra: str = "") -> Iterator[int]:
    """Unbound on 127.0.0.1:PORT forwarding every name to ``forward`` (``127.0.0.1:PORT``);
    ``server_extra`` is added to its ``server:`` clause. Yields its UDP/TCP port."""
    if shutil.which("unbound") is None:
        pytest.skip("unbound is not installed (Debian package unbound; tests/setup.sh)")
    host, _, upstream_port = forward.rpartition(":")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="dockdns-unbound-") as directory:
        config = Path(directory) / "unbound.conf"
        config.write_text(f"""server:
  interface: 127.0.0.1@{port}
  do-daemonize: no
  chroot: ""
  username: ""
  pidfile: ""
  use-syslog: no
  logfile: ""
  directory: "{directory}"
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  # Marked down after a second of silence rather than two minutes, so tests see it soon.
  infra-cache-max-rtt: 1000
{server_extra}
forward-zone:
  name: "."
  forward-addr: {host}@{upstream_port}
""")
        process = subprocess.Popen(["unbound", "-d", "-c", str(config)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_listening(port, process)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        try:
            # A local-zone name (RFC 6761 .invalid): answered without asking the upstream.
            ask("127.0.0.1", port, "ready.invalid", timeout=0.2)
            return
        except (dns.exception.Timeout, ConnectionRefusedError):
            time.sleep(0.05)
    raise RuntimeError(f"unbound on 127.0.0.1:{port} did not answer (exit {process.poll()})")
