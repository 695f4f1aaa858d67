"""Talking to upstreams: UDP from a pool of long-lived sockets, TCP one connection per query.

Every UDP query gets a random ID and goes out from a randomly chosen socket of the pool, each
bound to its own kernel-chosen port. A socket is retired after ``ROTATE_AFTER`` queries and a fresh
one (on a fresh port) takes its place, so the ports an off-path spoofer would have to learn keep
changing; the retired one stays open until the replies it waits for are in. A datagram is
accepted as the reply only if its ID is one we are waiting for on that socket, it comes from the
address and port that query went to, and it carries the same question; anything else (forged,
late or garbage) is counted and dropped. An ICMP error about a query (port unreachable) fails that
query's exchange at once with ``UpstreamUnreachable``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import secrets
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from resolver.dns.addresses import HostPort
from resolver.dns.framing import frame, read_framed
from resolver.dns.upstream_message import reply_question, same_question

log = logging.getLogger("dockdns.upstream")

# Sockets per address family: each is a source port a spoofer has to hit, on top of the 16-bit
# ID, and a handful spreads the receive work.
SOCKETS_PER_FAMILY = 8
# Queries sent from one socket before it is replaced by one on a new port. A bind per 256
# upstream queries costs nothing measurable; a port that lives this briefly is hard to aim at.
ROTATE_AFTER = 256
# IDs tried before giving up on a socket whose pending table is that full (65536 IDs per socket,
# far above any --max-inflight share).
ID_TRIES = 64


@dataclass(slots=True)
class _Waiter:
    host: str
    port: int
    question: bytes
    future: asyncio.Future[bytes]


@dataclass(slots=True)
class UDPExchange:
    """One query sent; ``future`` gets the matching reply. ``cancel`` stops waiting for it."""

    future: asyncio.Future[bytes]
    _socket: _Socket
    _qid: int

    def cancel(self) -> None:
        waiter = self._socket.pending.get(self._qid)
        if waiter is not None and waiter.future is self.future:
            self._socket.forget(self._qid)
        if not self.future.done():
            self.future.cancel()
        elif not self.future.cancelled():
            self.future.exception()  # seen: an error nobody waits for any more is no news


@dataclass(slots=True)
class TransportStats:
    udp_sent: int = 0
    tcp_sent: int = 0
    ignored: int = 0  # datagrams that matched no outstanding query (forged, late, garbage)
    rotations: int = 0
    unreachable: int = 0  # attempts failed at once by an ICMP error
    # The same, by reason: the ``reason`` label of dockdns_upstream_rejected_replies_total.
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        """Count one reply dropped: ``malformed`` (no header or question), ``unknown_id`` (no
        query of ours has that ID: forged, or late), ``wrong_source`` (not from the address and
        port asked) or ``wrong_question``."""
        self.ignored += 1
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


# Linux: with IP_RECVERR/IPV6_RECVERR an unconnected UDP socket queues the ICMP errors its sends
# provoke (port or host unreachable), each with the datagram and address it was about, so an
# attempt to a closed port fails at once instead of timing out. Not in Python's socket module.
IP_RECVERR = 11
IPV6_RECVERR = 25
# struct sock_extended_err begins with the errno of the error (u32, host order).
_EE_ERRNO = struct.Struct("=I")


class UpstreamUnreachable(OSError):
    """The upstream's host or port answered an attempt with an ICMP error."""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: _Socket) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner.dispatch(data, addr)

    def error_received(self, exc: Exception) -> None:
        # The loop's recvfrom saw the pending error; the error queue says which datagram it was.
        self.owner.read_errors()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.owner.closed.done():
            self.owner.closed.set_result(None)


@dataclass(eq=False, slots=True)
class _Socket:
    stats: TransportStats
    closed: asyncio.Future[None]
    transport: asyncio.DatagramTransport | None = None
    # A second descriptor of the same socket, for reading its error queue (MSG_ERRQUEUE), which
    # the event loop's transport does not do.
    errors: socket.socket | None = None
    # Queries sent from this socket and not yet answered or given up: one per attempt of a
    # resolution in flight, so --max-inflight times the upstreams one question may try, and
    # never more than the 65,536 IDs (``send`` gives up on a socket that full).
    pending: dict[int, _Waiter] = field(default_factory=dict)
    sent: int = 0
    retired: bool = False  # replaced: closes once the replies it waits for are in

    def dispatch(self, data: bytes, addr: Any) -> None:
        if len(data) < 12:
            self.stats.reject("malformed")
            return
        waiter = self.pending.get(int.from_bytes(data[:2], "big"))
        if waiter is None:
            self.stats.reject("unknown_id")
            return
        if addr[0] != waiter.host or addr[1] != waiter.port:
            self.stats.reject("wrong_source")
            return
        question = reply_question(data)
        if question is None:
            self.stats.reject("malformed")
            return
        if not same_question(question, waiter.question):
            self.stats.reject("wrong_question")
            return
        qid = int.from_bytes(data[:2], "big")
        self.forget(qid)
        if not waiter.future.done():
            waiter.future.set_result(data)

    def read_errors(self) -> None:
        """Fail the attempts the queued ICMP errors are about; drain the queue (while it holds
        anything the socket stays readable to the loop)."""
        if self.errors is None:
            return
        while True:
            try:
                data, ancillary, _, addr = self.errors.recvmsg(
                    512, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
            except OSError:  # BlockingIOError: drained
                return
            code = next((_EE_ERRNO.unpack_from(item[2])[0] for item in ancillary
                         if len(item[2]) >= _EE_ERRNO.size), errno.EHOSTUNREACH)
            waiter = self.pending.get(int.from_bytes(data[:2], "big")) if len(data) >= 2 else None
            if waiter is None or addr is None or (addr[0], addr[1]) != (waiter.host,
                                                                       waiter.port):
                continue
            self.stats.unreachable += 1
            self.forget(int.from_bytes(data[:2], "big"))
            if not waiter.future.done():
                waiter.future.set_exception(UpstreamUnreachable(code, os.strerror(code)))

    def forget(self, qid: int) -> None:
        del self.pending[qid]
        if self.retired and not self.pending:
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.errors is not None:
            self.errors.close()
            self.errors = None
        for waiter in self.pending.values():
            if not waiter.future.done():
                waiter.future.cancel()
        self.pending.clear()


async def _bind(family: int, stats: TransportStats) -> _Socket:
    loop = asyncio.get_running_loop()
    wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        sock.bind((wildcard, 0))
        sock.setblocking(False)
        errors = socket.socket(fileno=os.dup(sock.fileno()))
    except OSError:
        sock.close()
        raise
    errors.setblocking(False)
    owner = _Socket(stats, loop.create_future(), errors=errors)
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(owner), sock=sock)
    except BaseException:  # cancelled too (a shutdown while the first query opens sockets)
        errors.close()
        sock.close()
        raise
    owner.transport = transport
    return owner


class UpstreamUDP:
    def __init__(self, sockets_per_family: int = SOCKETS_PER_FAMILY,
                 rotate_after: int = ROTATE_AFTER) -> None:
        self._per_family = sockets_per_family
        self._rotate_after = rotate_after
        self._pools: dict[int, list[_Socket]] = {}
        self._retired: set[_Socket] = set()
        self._lock = asyncio.Lock()
        self.stats = TransportStats()
        self._closed = False

    async def _open(self, family: int) -> _Socket:
        return await _bind(family, self.stats)

    async def _pool(self, family: int) -> list[_Socket]:
        pool = self._pools.get(family)
        if pool is not None:
            return pool
        async with self._lock:
            if self._closed:
                raise OSError("the upstream sockets are closed")
            pool = self._pools.get(family)
            if pool is None:
                pool = []
                try:
                    for _ in range(self._per_family):
                        pool.append(await self._open(family))
                except BaseException:
                    await _close_sockets(pool)
                    raise
                self._pools[family] = pool
            return pool

    async def _replace(self, family: int, pool: list[_Socket], old: _Socket) -> _Socket:
        """Put a socket on a fresh port in ``old``'s place; ``old`` closes once drained."""
        try:
            fresh = await self._open(family)
        except OSError as err:
            log.warning("cannot open a new upstream socket, keeping the old one: %s", err)
            old.sent = 0
            return old
        if self._closed or old not in pool:
            # Closed meanwhile, or another query replaced it first.
            fresh.close()
            if self._closed:
                raise OSError("the upstream sockets are closed")
            return random.choice(pool)
        pool[pool.index(old)] = fresh
        self.stats.rotations += 1
        old.retired = True
        if old.pending:
            self._retired.add(old)
            old.closed.add_done_callback(lambda _: self._retired.discard(old))
        else:
            old.close()
        return fresh

    async def send(self, server: HostPort, message: bytes, question: bytes) -> UDPExchange:
        """Send ``message`` (its ID is replaced by a fresh random one) to ``server``."""
        family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
        pool = await self._pool(family)
        sock = random.choice(pool)
        if sock.sent >= self._rotate_after:
            sock = await self._replace(family, pool, sock)
        for _ in range(ID_TRIES):
            qid = secrets.randbelow(65536)
            if qid not in sock.pending:
                break
        else:
            raise OSError("no free query ID on the upstream socket")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        sock.pending[qid] = _Waiter(server.host, server.port, question, future)
        exchange = UDPExchange(future, sock, qid)
        try:
            if sock.transport is None or sock.transport.is_closing():
                raise OSError("the socket is closed")
            # Errors of the send itself reach the protocol's error_received, as ICMP ones do.
            sock.transport.sendto(qid.to_bytes(2, "big") + message[2:],
                                  (server.host, server.port))
        except OSError as err:
            exchange.cancel()
            raise OSError(f"cannot send to {server}: {err}") from None
        self.stats.udp_sent += 1
        sock.sent += 1
        return exchange

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            sockets = [sock for pool in self._pools.values() for sock in pool]
            sockets += self._retired
            self._pools.clear()
            self._retired.clear()
        await _close_sockets(sockets)


async def _close_sockets(sockets: list[_Socket]) -> None:
    for sock in sockets:
        sock.close()
    closing = [sock.closed for sock in sockets]
    if closing:
        await asyncio.wait(closing)


async def tcp_exchange(server: HostPort, message: bytes, question: bytes, timeout: float,
                       stats: TransportStats) -> bytes:
    """One query over a fresh TCP connection (RFC 7766 framing), with a random ID. The reply must
    carry our ID and question. Raises OSError, TimeoutError or asyncio.IncompleteReadError."""
    qid = secrets.randbelow(65536).to_bytes(2, "big")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            stats.tcp_sent += 1
            payload = qid + message[2:]
            writer.write(frame(payload))
            await writer.drain()
            while True:
                data = await read_framed(reader)
                found = reply_question(data)
                if data[:2] != qid:
                    stats.reject("unknown_id")
                elif found is None:
                    stats.reject("malformed")
                elif not same_question(found, question):
                    stats.reject("wrong_question")
                else:
                    return data
        finally:
            writer.close()
