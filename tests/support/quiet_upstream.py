"""An upstream DNS server on loopback that refuses every name (dnsmasq without upstreams).

Engine tests give it to dockdns as ``--upstream``, so that a name dockdns does not hold is
answered at once (REFUSED) and nothing ever leaves the machine. ``answering_upstream`` is the
same server knowing a few names of the test's (``--host-record``), for "forwarded" answers.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator, Mapping

import pytest

from tests.support.net import free_port
from tests.support.upstream import wait_answering


@contextlib.contextmanager
def refusing_upstream() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a dnsmasq that answers REFUSED to everything."""
    with answering_upstream({}) as address:
        yield address


@contextlib.contextmanager
def answering_upstream(records: Mapping[str, str]) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a dnsmasq that answers ``records`` (name -> IPv4 address) and
    REFUSED to everything else; it answers before this returns."""
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq is not installed (Debian package dnsmasq-base)")
    port = free_port()
    process = subprocess.Popen(
        ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
         "--listen-address=127.0.0.1", f"--port={port}", "--pid-file=",
         *(f"--host-record={name},{address}" for name, address in records.items())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_answering(port, process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_answering(port: int, process: subprocess.Popen[bytes]) -> None:
    # A local-zone name (RFC 6761 .invalid): answered without asking any upstream.
    wait_answering("127.0.0.1", port, "ready.invalid", timeout=20, process=process)
