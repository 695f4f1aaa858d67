"""Listening sockets, made here rather than by the event loop so that a bind failure keeps its
errno (uvloop wraps it into a message without one) and options are set in one place."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import time

from resolver.dns.addresses import HostPort

log = logging.getLogger("dockdns")

# Connections the kernel queues before we accept them; DNS over TCP is bursty (every truncated
# UDP answer brings one), so well above the default 100.
TCP_BACKLOG = 1024


# An IPv6 address just added (a Docker gateway right after `docker network create --ipv6`) is
# "tentative" until duplicate address detection ends: the kernel refuses to bind it meanwhile.
# DAD takes one RetransTimer (1 s) per probe, dad_transmits (1) by default; 5 s covers a few.
DAD_WAIT = 5.0
# /proc/net/if_inet6 flags (linux/if_addr.h).
IFA_F_TENTATIVE = 0x40
IFA_F_DADFAILED = 0x08
# Binding an address this host does not (yet) have (linux/in.h); applies to IPv6 sockets too.
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
# Buffer sizes past net.core.rmem_max/wmem_max, for a process with CAP_NET_ADMIN
# (asm-generic/socket.h; Python's socket module does not name them).
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


def ipv6_flags(host: str, table: str = "/proc/net/if_inet6") -> int | None:
    """The kernel's flags for the IPv6 address ``host`` on this host; None if none has it."""
    try:
        wanted = ipaddress.IPv6Address(host.split("%", 1)[0]).exploded.replace(":", "")
        with open(table) as lines:
            for line in lines:
                fields = line.split()
                if len(fields) >= 5 and fields[0] == wanted:
                    return int(fields[4], 16)
    except (OSError, ValueError):
        return None
    return None


def _family(address: HostPort) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address.host else socket.AF_INET


def _bound(address: HostPort, kind: socket.SocketKind, reuse_port: bool) -> socket.socket:
    try:
        return _bind_once(address, kind, reuse_port, freebind=False)
    except OSError as err:
        if err.errno != errno.EADDRNOTAVAIL or ":" not in address.host:
            raise
        flags = ipv6_flags(address.host)
        if flags is None or flags & IFA_F_DADFAILED or not flags & IFA_F_TENTATIVE:
            raise
    # Tentative: wait for duplicate address detection to end, then bind; if it still has not
    # ended, bind anyway (IP_FREEBIND): the address is ours, queries arrive once DAD is done.
    log.info("%s is still tentative (IPv6 duplicate address detection); waiting up to %.0f s",
             address, DAD_WAIT)
    deadline = time.monotonic() + DAD_WAIT
    while time.monotonic() < deadline:
        time.sleep(0.1)
        flags = ipv6_flags(address.host)
        if flags is None or not flags & IFA_F_TENTATIVE:
            break
    if flags is not None and flags & IFA_F_TENTATIVE and not flags & IFA_F_DADFAILED:
        log.warning("%s is still tentative after %.0f s; listening on it anyway (IP_FREEBIND)",
                    address, DAD_WAIT)
        return _bind_once(address, kind, reuse_port, freebind=True)
    return _bind_once(address, kind, reuse_port, freebind=False)


def _bind_once(address: HostPort, kind: socket.SocketKind, reuse_port: bool,
               freebind: bool) -> socket.socket:
    sock = socket.socket(_family(address), kind)
    try:
        if freebind:
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
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


def bind_udp(address: HostPort, reuse_port: bool = False, buffer: int = 0,
             insist: bool = False) -> socket.socket:
    """A bound UDP socket; with ``buffer``, its receive and send buffers asked for that size
    (``set_buffers``), the outcome logged: a warning if the kernel gave less and the size was
    asked for explicitly (``insist``), else an info line."""
    sock = _bound(address, socket.SOCK_DGRAM, reuse_port)
    if buffer:
        receive, send = set_buffers(sock, buffer)
        short = [f"{what} {got // 2} bytes (net.core.{limit})"
                 for what, got, limit in (("receive", receive, "rmem_max"),
                                          ("send", send, "wmem_max")) if got < 2 * buffer]
        if short:
            (log.warning if insist else log.info)(
                "UDP %s: asked for %d-byte buffers, the kernel gave %s; under bursts queries "
                "may be dropped: raise the sysctl or give dockdns CAP_NET_ADMIN", address,
                buffer, " and ".join(short))
        else:
            log.debug("UDP %s: receive buffer %d, send buffer %d bytes (the kernel's "
                      "accounting)", address, receive, send)
    return sock


def set_buffers(sock: socket.socket, size: int) -> tuple[int, int]:
    """Ask for ``size``-byte receive and send buffers (SO_RCVBUF/SO_SNDBUF, in the units of
    net.core.rmem_max; the kernel reserves twice that for its bookkeeping). With CAP_NET_ADMIN
    (root) the FORCE options pass the sysctl's cap; without, the kernel caps the ask at it
    silently. Returns what the kernel then reports: (receive, send), doubled as it keeps them.

    A burst of queries arriving while the daemon is off its core waits in the receive buffer;
    what does not fit is dropped by the kernel (RcvbufErrors), unseen by dockdns. The send
    buffer matters where replies leave through a queue (a real interface, a qdisc): past it a
    send fails with EAGAIN and the reply waits in the listener's queue."""
    for forced, fallback in ((SO_RCVBUFFORCE, socket.SO_RCVBUF),
                                   (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, size)
        except OSError:  # EPERM without CAP_NET_ADMIN
            sock.setsockopt(socket.SOL_SOCKET, fallback, size)
    return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))


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
        flags = ipv6_flags(address.host) if ":" in address.host else None
        if flags is not None and flags & IFA_F_DADFAILED:
            return (f"cannot listen on {address}: IPv6 duplicate address detection failed for "
                    f"it (another host on the link has it); choose another with {flag}")
        return (f"cannot listen on {address}: no interface has that address; choose another "
                f"with {flag}")
    return f"cannot listen on {address}: {err.strerror or err}"
