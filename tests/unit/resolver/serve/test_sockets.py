"""Listening sockets on loopback: bound non-blocking, v6-only for IPv6, SO_REUSEPORT when asked,
and a bind failure turned into one line that says what to do."""

from __future__ import annotations

import errno
import socket

import pytest

from resolver.dns.addresses import HostPort
from resolver.serve.sockets import bind_problem, bind_tcp, bind_udp


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
