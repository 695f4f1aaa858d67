"""The command line: one clear line and exit status 2 for bad settings, 1 when it cannot bind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

from tests.support.daemon import REPO, command
from tests.support.net import free_port


def run(*args: str, prefix: tuple[str, ...] = (),
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *command(*args)], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, check=False,
                          env={k: v for k, v in os.environ.items() if not k.startswith("DOCKDNS_")})


@pytest.mark.parametrize(("args", "setting"), [
    (("--ttl", "soon"), "ttl"),
    (("--ttl", "-5"), "ttl"),
    (("--listen", "1.2.3:53"), "listen"),
    (("--listen", "[::1]:99999"), "listen"),
    (("--upstream", "dns.example"), "upstreams"),
    (("--metrics-listen", "127.0.0.1"), "metrics_listen"),
    (("--docker-host", "/var/run/docker.sock"), "docker_hosts"),
    (("--log-level", "loud"), "log_level"),
    (("--domain", "a..b"), "domain"),
])
def test_bad_flag_is_one_line_and_exit_2(args: tuple[str, ...], setting: str) -> None:
    done = run("serve", "--no-docker", *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"dockdns: invalid setting '{setting}'")


def test_cannot_bind_privileged_port_without_the_capability() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop CAP_NET_BIND_SERVICE")
    done = run("serve", "--no-docker", prefix=("setpriv", "--bounding-set=-net_bind_service"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "dockdns: cannot listen on 127.0.0.11:53: permission denied (ports below 1024 need root "
        "or CAP_NET_BIND_SERVICE); choose another address, e.g. --listen 127.0.0.1:5353"
    ]


def test_address_in_use() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", port))
        done = run("serve", "--no-docker", "--listen", f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert "already in use" in done.stderr.strip().splitlines()[-1]
