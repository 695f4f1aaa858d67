"""An upstream DNS server on loopback that refuses every name (dnsmasq without upstreams).

Engine tests give it to dockdns as ``--upstream``, so that a name dockdns does not hold is
answered at once (REFUSED) and nothing ever leaves the machine.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.net import free_port


@contextlib.contextmanager
def refusing_upstream() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a dnsmasq that answers REFUSED to everything."""
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq is not installed (Debian package dnsmasq-base)")
    port = free_port()
    process = subprocess.Popen(
        ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
         "--listen-address=127.0.0.1", f"--port={port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
