"""A network namespace joined to the host by a veth pair: a test client with its own address.

Made with iproute2 as root; everything is removed on exit. Addresses come from 10.254.0.0/16,
which only these tests use, and traffic never leaves the pair.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import IN_CI


@dataclass(frozen=True)
class Namespace:
    name: str
    host_address: str  # the host's end of the veth pair
    address: str  # the namespace's end

    def run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True,
                              text=True, timeout=timeout, check=False)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def require_root_networking() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        if IN_CI:
            pytest.fail("network namespace tests need root and iproute2 in CI")
        pytest.skip("network namespace tests need root and iproute2")


@contextlib.contextmanager
def namespace(subnet_octet: int) -> Iterator[Namespace]:
    """A namespace at 10.254.<subnet_octet>.2 with the host at 10.254.<subnet_octet>.1."""
    require_root_networking()
    tag = secrets.token_hex(3)
    name, host_if, ns_if = f"ddns-{tag}", f"vh{tag}", f"vn{tag}"
    host_address, address = f"10.254.{subnet_octet}.1", f"10.254.{subnet_octet}.2"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", name)
        _ip("addr", "add", f"{host_address}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{address}/24", "dev", ns_if)
        _ip("netns", "exec", name, "ip", "link", "set", ns_if, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield Namespace(name, host_address, address)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", host_if)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", name)
