"""Talking to upstreams: UDP from a pool of long-lived sockets, TCP one connection per query.

Every UDP query gets a random ID and goes out from a randomly chosen socket of the pool, each
bound to its own kernel-chosen port. A datagram is accepted as the reply only if its ID is one we
are waiting for on that socket, it comes from the address and port that query went to, and it
carries the same question; anything else (forged, late or garbage) is counted and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import socket
from dataclasses import dataclass, field
from typing import Any

import asyncio_dgram

from resolver.config import HostPort
from resolver.message import reply_question, same_question

log = logging.getLogger("dockdns.upstream")

# Sockets per address family. Each is one source port an off-path spoofer has to guess, on top of
# the 16-bit ID; a handful also spreads the receive work. They stay open for the daemon's life.
SOCKETS_PER_FAMILY = 8
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
            del self._socket.pending[self._qid]
        if not self.future.done():
            self.future.cancel()


@dataclass(slots=True)
class TransportStats:
    udp_sent: int = 0
    tcp_sent: int = 0
    ignored: int = 0  # datagrams that matched no outstanding query (forged, late, garbage)


@dataclass(eq=False, slots=True)
class _Socket:
    stream: Any  # asyncio_dgram.DatagramServer (untyped)
    stats: TransportStats
    pending: dict[int, _Waiter] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        while True:
            try:
                data, addr = await self.stream.recv()
            except asyncio_dgram.TransportClosed:
                return
            except OSError as err:
                # ICMP errors from earlier sends (port unreachable): the attempt times out.
                log.debug("upstream socket error: %s", err)
                continue
            self.dispatch(data, addr)

    def dispatch(self, data: bytes, addr: Any) -> None:
        waiter = self.pending.get(int.from_bytes(data[:2], "big")) if len(data) >= 12 else None
        if waiter is None or addr[0] != waiter.host or addr[1] != waiter.port:
            self.stats.ignored += 1
            return
        question = reply_question(data)
        if question is None or not same_question(question, waiter.question):
            self.stats.ignored += 1
            return
        del self.pending[int.from_bytes(data[:2], "big")]
        if not waiter.future.done():
            waiter.future.set_result(data)


class UpstreamUDP:
    def __init__(self, sockets_per_family: int = SOCKETS_PER_FAMILY) -> None:
        self._per_family = sockets_per_family
        self._pools: dict[int, list[_Socket]] = {}
        self._lock = asyncio.Lock()
        self.stats = TransportStats()
        self._closed = False

    async def _pool(self, family: int) -> list[_Socket]:
        pool = self._pools.get(family)
        if pool is not None:
            return pool
        async with self._lock:
            if self._closed:
                raise OSError("the upstream sockets are closed")
            pool = self._pools.get(family)
            if pool is None:
                wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
                pool = []
                try:
                    for _ in range(self._per_family):
                        stream = await asyncio_dgram.bind((wildcard, 0))
                        sock = _Socket(stream, self.stats)
                        sock.reader = asyncio.get_running_loop().create_task(
                            sock.read(), name="upstream-udp-reader")
                        pool.append(sock)
                except OSError:
                    await _close_sockets(pool)
                    raise
                self._pools[family] = pool
            return pool

    async def send(self, server: HostPort, message: bytes, question: bytes) -> UDPExchange:
        """Send ``message`` (its ID is replaced by a fresh random one) to ``server``."""
        family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
        sock = random.choice(await self._pool(family))
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
            await sock.stream.send(qid.to_bytes(2, "big") + message[2:],
                                   (server.host, server.port))
        except (OSError, asyncio_dgram.TransportClosed) as err:
            exchange.cancel()
            raise OSError(f"cannot send to {server}: {err}") from None
        self.stats.udp_sent += 1
        return exchange

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            await _close_sockets(pool)


async def _close_sockets(pool: list[_Socket]) -> None:
    for sock in pool:
        sock.stream.close()
        for waiter in sock.pending.values():
            if not waiter.future.done():
                waiter.future.cancel()
        sock.pending.clear()
        if sock.reader is not None:
            sock.reader.cancel()
    readers = [sock.reader for sock in pool if sock.reader is not None]
    if readers:
        await asyncio.wait(readers)


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
            writer.write(len(payload).to_bytes(2, "big") + payload)
            await writer.drain()
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(length)
                found = reply_question(data)
                if data[:2] == qid and found is not None and same_question(found, question):
                    return data
                stats.ignored += 1
        finally:
            writer.close()
