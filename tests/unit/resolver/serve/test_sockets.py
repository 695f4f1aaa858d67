"""Listening sockets on loopback: bound non-blocking, v6-only for IPv6, SO_REUSEPORT when asked,
UDP buffers of the size asked (past the sysctl cap with root, capped and said so without), and a
bind failure turned into one line that says what to do."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from resolver.dns.addresses import HostPort
from resolver.serve.sockets import bind_problem, bind_tcp, bind_udp

ROOT = Path(__file__).resolve().parents[4]


def test_udp_and_tcp_bind() -> None:
    with bind_udp(HostPort("127.0.0.1", 0)) as udp:
        assert udp.type == socket.SOCK_DGRAM and not udp.getblocking()
        port = udp.getsockname()[1]
        # The same port over TCP is free: UDP and TCP listen side by side.
        with bind_tcp(HostPort("127.0.0.1", port)) as tcp:
            assert tcp.getsockname() == ("127.0.0.1", port)
            assert tcp.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
            assert tcp.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass  # the listen backlog accepts before we call accept()


def test_ipv6_is_v6_only() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    with bind_udp(HostPort("::1", 0)) as udp:
        assert udp.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


def test_reuse_port_lets_workers_share_a_port() -> None:
    with bind_udp(HostPort("127.0.0.1", 0), reuse_port=True) as first:
        port = first.getsockname()[1]
        with bind_udp(HostPort("127.0.0.1", port), reuse_port=True) as second:
            assert second.getsockname()[1] == port
        with pytest.raises(OSError) as raised:
            bind_udp(HostPort("127.0.0.1", port))
        assert raised.value.errno == errno.EADDRINUSE
        assert "already in use" in bind_problem(HostPort("127.0.0.1", port), raised.value)


def test_bind_problem_lines() -> None:
    address = HostPort("127.0.0.1", 53)
    assert "CAP_NET_BIND_SERVICE" in bind_problem(address, OSError(errno.EACCES, "x"))
    assert "--metrics-listen (or --no-metrics)" in bind_problem(
        address, OSError(errno.EADDRINUSE, "x"), what="metrics")
    with pytest.raises(OSError) as raised:
        bind_udp(HostPort("192.0.2.1", 0))  # TEST-NET-1: on no interface here
    line = bind_problem(HostPort("192.0.2.1", 0), raised.value)
    assert line == ("cannot listen on 192.0.2.1:0: no interface has that address; choose "
                    "another with --listen")
    assert bind_problem(address, OSError(errno.EIO, "I/O error")) == \
        "cannot listen on 127.0.0.1:53: I/O error"


def _rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


def test_udp_buffers_are_set_on_the_socket(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dockdns")
    with bind_udp(HostPort("127.0.0.1", 0), buffer=96 << 10) as udp:
        # The kernel keeps twice what is asked: its bookkeeping (SO_RCVBUF in socket(7)).
        assert udp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * (96 << 10)
        assert udp.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * (96 << 10)
    with bind_udp(HostPort("127.0.0.1", 0)) as default:  # 0: the kernel's own default
        rmem_default = int(Path("/proc/sys/net/core/rmem_default").read_text())
        assert default.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == rmem_default
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


# Binds with a buffer past the cap and prints what the kernel gave and what was logged.
CAPPED = r"""
import logging, socket, sys
from resolver.dns.addresses import HostPort
from resolver.serve.sockets import bind_udp
logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(message)s", stream=sys.stdout)
with bind_udp(HostPort("127.0.0.1", 0), buffer=int(sys.argv[1]), insist=sys.argv[2] == "1") as s:
    print("got", s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
"""


def _bind_capped(asked: int, insist: bool) -> tuple[int, list[str]]:
    """``CAPPED`` run as this process's user, or as nobody when that is root (root passes the
    cap): (receive buffer granted, log lines)."""
    argv = [sys.executable, "-c", CAPPED, str(asked), "1" if insist else "0"]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to bind as a user without root")
        argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True,
                          cwd=ROOT)
    lines = done.stdout.splitlines()
    return int(lines[-1].split()[1]), lines[:-1]


def test_udp_buffers_past_the_sysctl_cap() -> None:
    """Past net.core.rmem_max a process without CAP_NET_ADMIN is capped, and says so: a warning
    when the size was asked for explicitly, info for the default; root gets it in full."""
    asked = _rmem_max() + (64 << 10)
    for insist, level in ((True, "WARNING"), (False, "INFO")):
        got, lines = _bind_capped(asked, insist)
        assert got == 2 * _rmem_max()
        told = [line for line in lines if "net.core.rmem_max" in line]
        assert len(told) == 1 and told[0].startswith(level + " "), lines
    if os.geteuid() == 0:
        with bind_udp(HostPort("127.0.0.1", 0), buffer=asked) as udp:
            assert udp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * asked
