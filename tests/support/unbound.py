"""A real Unbound (Debian package ``unbound``) on loopback, as the reference resolver.

It runs in the foreground with its default local zones, the iterator only (no validator, so no
trust anchor is fetched), and one forward zone for the root pointing at a loopback server of the
test's: whatever it cannot answer itself goes there, never off the machine. Also
``forwarding_unbound`` (port only, Unbound's infra cache tuned for dead-upstream tests) and
``dot_unbound``, a DNS-over-TLS server for dockdns's tls:// upstreams.
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


COMMON = """server:
  do-daemonize: no
  chroot: ""
  username: ""
  pidfile: ""
  use-syslog: no
  logfile: ""
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  # Marked down after a second of silence rather than two minutes, so tests see it soon.
  infra-cache-max-rtt: 1000
"""


@contextlib.contextmanager
def forwarding_unbound(forward: str, server_extra: str = "") -> Iterator[int]:
    """Unbound on 127.0.0.1:PORT forwarding every name to ``forward`` (``127.0.0.1:PORT``);
    ``server_extra`` is added to its ``server:`` clause. Yields its UDP/TCP port."""
    host, _, upstream_port = forward.rpartition(":")
    port = free_port()
    with _running(f"""{COMMON}  interface: 127.0.0.1@{port}
{server_extra}
forward-zone:
  name: "."
  forward-addr: {host}@{upstream_port}
""", port):
        yield port


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A key and a self-signed certificate for ``name`` (its CN and only DNS SAN), made by
    openssl; the certificate is its own CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (tests/setup.sh)")
    key, pem = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(pem), "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return key, pem


@contextlib.contextmanager
def dot_unbound(key: Path, pem: Path, records: dict[str, str]) -> Iterator[int]:
    """Unbound serving DNS over TLS on 127.0.0.1:PORT with ``key``/``pem``, answering
    ``records`` (name -> IPv4 address) from local data and REFUSED/NXDOMAIN for the rest: it
    forwards nowhere. Yields the TLS port."""
    port, tls_port = free_port(), free_port()
    local = "".join(f'  local-data: "{name}. 300 IN A {address}"\n'
                    for name, address in records.items())
    zones = "".join(f'  local-zone: "{name}." static\n' for name in records)
    with _running(f"""{COMMON}  interface: 127.0.0.1@{port}
  interface: 127.0.0.1@{tls_port}
  tls-port: {tls_port}
  tls-service-key: "{key}"
  tls-service-pem: "{pem}"
  # Idle connections closed after a second, so that tests see dockdns open a new one.
  tcp-idle-timeout: 1000
{zones}{local}""", port):
        yield tls_port


@contextlib.contextmanager
def _running(config_text: str, port: int) -> Iterator[None]:
    if shutil.which("unbound") is None:
        pytest.skip("unbound is not installed (Debian package unbound; tests/setup.sh)")
    with tempfile.TemporaryDirectory(prefix="dockdns-unbound-") as directory:
        config = Path(directory) / "unbound.conf"
        config.write_text(config_text.replace("server:\n",
                                              f'server:\n  directory: "{directory}"\n', 1))
        process = subprocess.Popen(["unbound", "-d", "-c", str(config)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_listening(port, process)
            yield
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    # A local-zone name (RFC 6761 .invalid): answered without asking any upstream.
    wait_answering("127.0.0.1", port, "ready.invalid", timeout=20, process=process)
