"""Listening sockets, made here rather than by the event loop so that a bind failure keeps its
errno (uvloop wraps it into a message without one) and options are set in one place."""

from __future__ import annotations

import errno
import socket

from resolver.dns.addresses import HostPort

# Connections the kernel queues before we accept them; DNS over TCP is bursty (every truncated
# UDP answer brings one), so well above the default 100.
TCP_BACKLOG = 1024


def _family(address: HostPort) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address.host else socket.AF_INET


def _bound(address: HostPort, kind: socket.SocketKind, reuse_port: bool) -> socket.socket:
    sock = socket.socket(_family(address), kind)
    try:
        if kind == socket.SOCK_STREAM:
            # A restarted daemon must not wait out TIME_WAIT connections of the previous one.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address.host, address.port))
        if kind == socket.SOCK_STREAM:
            sock.listen(TCP_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def bind_udp(address: HostPort, reuse_port: bool = False) -> socket.socket:
    return _bound(address, socket.SOCK_DGRAM, reuse_port)


def bind_tcp(address: HostPort, reuse_port: bool = False) -> socket.socket:
    return _bound(address, socket.SOCK_STREAM, reuse_port)


def bind_problem(address: HostPort, err: OSError, what: str = "listen") -> str:
    flag = "--listen" if what == "listen" else "--metrics-listen (or --no-metrics)"
    if err.errno == errno.EACCES:
        return (f"cannot listen on {address}: permission denied (ports below 1024 need root or "
                f"CAP_NET_BIND_SERVICE); choose another address, e.g. --listen 127.0.0.1:5353")
    if err.errno == errno.EADDRINUSE:
        return (f"cannot listen on {address}: the address is already in use; stop the other "
                f"server or choose another with {flag}")
    if err.errno == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {address}: no interface has that address; choose another "
                f"with {flag}")
    return f"cannot listen on {address}: {err.strerror or err}"
