"""Talking to upstreams: UDP from a pool of long-lived sockets, TCP one connection per query.

Every UDP query gets a random ID and goes out from a randomly chosen socket of the pool, each
bound to its own kernel-chosen port. A socket is retired after ``ROTATE_AFTER`` queries and a fresh
one (on a fresh port) takes its place, so the ports an off-path spoofer would have to learn keep
changing; the replacement is bound in the background, off the query path, and the retired socket
stays open until the replies it waits for are in. A datagram is accepted as the reply only if its
ID is one we are waiting for on that socket, it comes from the address and port that query went
to, and it carries the same question; anything else (forged, late or garbage) is counted and
dropped. An ICMP error about a query (port unreachable) fails that query's exchange at once with
``UpstreamUnreachable``.

Nothing here makes a task or a future per query: ``send`` is a plain call that puts a
``UDPExchange`` in the socket's pending table, and the datagram protocol's callback hands the
matched reply (or the ICMP error) straight to the exchange's ``Receiver``, the resolution that
sent it. ``ask`` wraps one exchange in a future, for the few callers (probes) that want to await.

Queries are not sent one by one: perf on the forwarded-miss benchmark put a third of dockdns's
CPU per miss in the kernel, half of that waking the process at the other end of each datagram.
A query is queued on its socket, and the queues go out with one sendmmsg(2) a socket
(``resolver.net.mmsg.Outbox``) once the loop has run the callbacks at hand, a client batch's
misses together: the upstream is woken once per batch, not once per query. Replies still come
through the loop's datagram transport, because the loop's reader for a plain descriptor
(uvloop's) gives up on the socket at the first ICMP error, which IP_RECVERR reports as POLLERR.
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
from typing import Any, Protocol

from resolver.dns.addresses import HostPort
from resolver.dns.framing import frame, read_framed
from resolver.dns.upstream_message import reply_question, same_question
from resolver.forward.errors import UpstreamUnreachable
from resolver.net.mmsg import Outbox, pack_sockaddr
from resolver.ops.logs import RateLimitedLog

log = logging.getLogger("dockdns.upstream")
limited = RateLimitedLog(log)

# Sockets per address family: each is a source port a spoofer has to hit, on top of the 16-bit
# ID, and a handful spreads the receive work.
SOCKETS_PER_FAMILY = 8
# Queries sent from one socket before it is replaced by one on a new port. A port that lives
# this briefly is hard to aim at; the bind happens in the background, never on a query's path.
ROTATE_AFTER = 256
# IDs tried before giving up on a socket whose pending table is that full (65536 IDs per socket,
# far above any --max-inflight share).
ID_TRIES = 64
# Query IDs are read from this many bytes of the kernel's CSPRNG (os.urandom) at a time, two
# bytes an ID: one getrandom(2) per 2,048 queries instead of one per query, and just as
# unpredictable (each ID is used once, in order, and the buffer is never reused).
ID_BUFFER = 4096


class Receiver(Protocol):
    """Who sent an exchange, and gets what becomes of it (once, unless it cancels first)."""

    def replied(self, exchange: UDPExchange, data: bytes) -> None: ...

    def unreachable(self, exchange: UDPExchange, error: OSError) -> None: ...


class UDPExchange:
    """One query sent and not yet answered: what a reply must match, and who gets it."""

    __slots__ = ("host", "port", "question", "receiver", "server", "sent_at", "_socket", "_qid",
                 "name")

    def __init__(self, server: HostPort, question: bytes, receiver: Receiver,
                 sent_at: float, name: bytes) -> None:
        self.server = server
        self.host = server.host
        self.port = server.port
        self.question = question
        self.receiver = receiver
        self.sent_at = sent_at
        self.name = name  # the server's packed socket address, sent to
        self._socket: _Socket | None = None
        self._qid = -1

    @property
    def pending(self) -> bool:
        """Still waiting for its reply (not answered, failed or cancelled)."""
        sock = self._socket
        return sock is not None and sock.pending.get(self._qid) is self

    def cancel(self) -> None:
        """Stop waiting for the reply; it will be dropped as ``unknown_id`` if it comes."""
        sock = self._socket
        if sock is not None and sock.pending.get(self._qid) is self:
            sock.forget(self._qid)
        self._socket = None


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


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: _Socket) -> None:
        self.owner = owner
        # The reply matching is done here, in the callback, with the owner's table at hand.
        self.datagram_received = owner.dispatch  # type: ignore[method-assign]

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
    pending: dict[int, UDPExchange] = field(default_factory=dict)
    # Queries waiting for the next flush: each exchange and its message, ID in place.
    outgoing: list[tuple[UDPExchange, bytes]] = field(default_factory=list)
    fd: int = -1  # the socket's descriptor, written to with sendmmsg beside the transport
    family: int = socket.AF_INET
    sent: int = 0
    retired: bool = False  # replaced: closes once the replies it waits for are in
    replacing: bool = False  # a replacement is being bound in the background

    def dispatch(self, data: bytes, addr: Any) -> None:
        # (The datagram protocol's callback: one datagram as the loop read it.)
        if len(data) < 12:
            self.stats.reject("malformed")
            return
        qid = (data[0] << 8) | data[1]
        exchange = self.pending.get(qid)
        if exchange is None:
            self.stats.reject("unknown_id")
            return
        if addr[1] != exchange.port or addr[0] != exchange.host:
            self.stats.reject("wrong_source")
            return
        asked = exchange.question
        end = 12 + len(asked)
        # The common case in one comparison: QR set, opcode QUERY, one question, and that
        # question's bytes our own, but for the case of the name. (Equal bytes cannot hide a
        # compression pointer: ours has none, and lowering never makes a label length.)
        if not (data[2] & 0xF8 == 0x80 and data[4] == 0 and data[5] == 1
                and same_question(data[12:end], asked)):
            question = reply_question(data)
            if question is None:
                self.stats.reject("malformed")
                return
            if not same_question(question, asked):
                self.stats.reject("wrong_question")
                return
        self.forget(qid)
        exchange._socket = None
        exchange.receiver.replied(exchange, data)

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
            qid = int.from_bytes(data[:2], "big") if len(data) >= 2 else -1
            exchange = self.pending.get(qid)
            if exchange is None or addr is None or (addr[0], addr[1]) != (exchange.host,
                                                                         exchange.port):
                continue
            self.stats.unreachable += 1
            self.forget(qid)
            exchange._socket = None
            exchange.receiver.unreachable(exchange, UpstreamUnreachable(code, os.strerror(code)))

    def forget(self, qid: int) -> None:
        del self.pending[qid]
        if self.retired and not self.pending and not self.outgoing:
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.errors is not None:
            self.errors.close()
            self.errors = None
        self.pending.clear()
        self.outgoing.clear()


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
    owner.fd = sock.fileno()
    owner.family = family
    return owner


class QueryIDs:
    """Query IDs from a buffer of the kernel's CSPRNG, refilled when used up."""

    __slots__ = ("_ids", "_next")

    def __init__(self) -> None:
        self._ids = memoryview(os.urandom(ID_BUFFER)).cast("H")
        self._next = 0

    def __call__(self) -> int:
        index = self._next
        if index >= len(self._ids):
            self._ids = memoryview(os.urandom(ID_BUFFER)).cast("H")
            index = 0
        self._next = index + 1
        return int(self._ids[index])


class UpstreamUDP:
    def __init__(self, sockets_per_family: int = SOCKETS_PER_FAMILY,
                 rotate_after: int = ROTATE_AFTER, batched: bool = True) -> None:
        self._per_family = sockets_per_family
        self._rotate_after = rotate_after
        self._batched = batched  # False: one sendto a query, where sendmmsg is missing (tests)
        self._pools: dict[int, list[_Socket]] = {}
        self._retired: set[_Socket] = set()
        # Per address family: where queries are sent from, one socket at a time.
        self._outboxes: dict[int, Outbox] = {}
        # Sockets with queries queued, flushed once the loop has run the callbacks at hand.
        self._queued: list[_Socket] = []
        self._flush_due = False
        # Exchanges waiting for their family's sockets to be bound (the first queries only).
        self._waiting: dict[int, list[tuple[UDPExchange, bytes]]] = {}
        # Each server's packed socket address, worked out once.
        self._addresses: dict[HostPort, bytes] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # binds in the background
        self.stats = TransportStats()
        self.next_id = QueryIDs()
        self._closed = False

    async def _open(self, family: int) -> _Socket:
        if family not in self._outboxes:
            self._outboxes[family] = Outbox(family, batched=self._batched)
        return await _bind(family, self.stats)

    def _background(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name="upstream-socket")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open_pool(self, family: int) -> None:
        """Bind the family's sockets, then send what waited for them."""
        pool: list[_Socket] = []
        try:
            for _ in range(self._per_family):
                pool.append(await self._open(family))
        except OSError as err:
            await _close_sockets(pool)
            waiting = self._waiting.pop(family, [])
            for exchange, _ in waiting:
                exchange.receiver.unreachable(exchange, OSError(
                    err.errno, f"cannot open an upstream socket: {err.strerror or err}"))
            return
        except BaseException:
            await _close_sockets(pool)
            raise
        if self._closed:
            await _close_sockets(pool)
            return
        self._pools[family] = pool
        for exchange, message in self._waiting.pop(family, []):
            try:
                self._send_from(random.choice(pool), exchange, message)
            except OSError as err:
                exchange.receiver.unreachable(exchange, err)

    async def _rotate(self, family: int, old: _Socket) -> None:
        """Put a socket on a fresh port in ``old``'s place; ``old`` closes once drained."""
        try:
            fresh = await self._open(family)
        except OSError as err:
            log.warning("cannot open a new upstream socket, keeping the old one: %s", err)
            old.sent = 0
            old.replacing = False
            return
        pool = self._pools.get(family)
        if self._closed or pool is None or old not in pool:
            fresh.close()
            return
        pool[pool.index(old)] = fresh
        self.stats.rotations += 1
        old.retired = True
        if old.pending or old.outgoing:
            self._retired.add(old)
            old.closed.add_done_callback(lambda _: self._retired.discard(old))
        else:
            old.close()

    def _address(self, server: HostPort) -> bytes:
        """``server``'s packed socket address."""
        known = self._addresses.get(server)
        if known is None:
            family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
            try:
                found = socket.getaddrinfo(server.host, server.port, family, socket.SOCK_DGRAM,
                                           0, socket.AI_NUMERICHOST)
            except socket.gaierror as err:
                raise OSError(f"cannot send to {server}: {err}") from None
            name = pack_sockaddr(family, found[0][4])
            if len(self._addresses) >= 1024:  # upstreams are a handful; a bound all the same
                self._addresses.clear()
            known = self._addresses[server] = name
        return known

    def send(self, server: HostPort, message: bytes, question: bytes, receiver: Receiver,
             now: float) -> UDPExchange:
        """Send ``message`` (its ID is replaced by a fresh random one) to ``server``; the reply
        or the ICMP error about it goes to ``receiver``, and so does a failure to send it (it
        goes out with the others queued, once the loop has run the callbacks at hand). Raises
        OSError if it cannot be queued."""
        if self._closed:
            raise OSError("the upstream sockets are closed")
        exchange = UDPExchange(server, question, receiver, now, self._address(server))
        family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
        pool = self._pools.get(family)
        if pool is None:
            # The family's first query: its sockets are bound in the background meanwhile.
            waiting = self._waiting.get(family)
            if waiting is None:
                waiting = self._waiting[family] = []
                self._background(self._open_pool(family))
            waiting.append((exchange, message))
            return exchange
        self._send_from(random.choice(pool), exchange, message)
        return exchange

    def _send_from(self, sock: _Socket, exchange: UDPExchange, message: bytes) -> None:
        pending = sock.pending
        next_id = self.next_id
        for _ in range(ID_TRIES):
            qid = next_id()
            if qid not in pending:
                break
        else:
            raise OSError("no free query ID on the upstream socket")
        transport = sock.transport
        if transport is None or transport.is_closing():
            raise OSError("the socket is closed")
        pending[qid] = exchange
        exchange._socket = sock
        exchange._qid = qid
        outgoing = sock.outgoing
        outgoing.append((exchange, qid.to_bytes(2, "big") + message[2:]))
        if len(outgoing) == 1:
            self._queued.append(sock)
            if not self._flush_due:
                self._flush_due = True
                asyncio.get_running_loop().call_soon(self._flush)
        self.stats.udp_sent += 1
        sock.sent += 1
        if sock.sent >= self._rotate_after and not sock.replacing:
            sock.replacing = True
            self._background(self._rotate(sock.family, sock))

    def _flush(self) -> None:
        """Send every socket's queued queries: a sendmmsg per socket (per 64 queries)."""
        self._flush_due = False
        queued = self._queued
        self._queued = []
        for sock in queued:
            self._flush_socket(sock)

    def _flush_socket(self, sock: _Socket) -> None:
        items = sock.outgoing
        sock.outgoing = []
        transport = sock.transport
        if transport is None or transport.is_closing():
            return
        outbox = self._outboxes[sock.family]
        taken = 0
        while taken < len(items):
            while taken < len(items) and not outbox.full:
                exchange, data = items[taken]
                taken += 1
                if exchange._socket is sock and not outbox.put(data, exchange.name, exchange):
                    self._failed(exchange, OSError(errno.EMSGSIZE, "query too long"))
            sent = outbox.flush(sock.fd, transport.sendto)
            for exchange, err in sent.failed:
                self._failed(exchange, err)
            for index in range(len(sent.blocked)):
                # The kernel's send buffer is full: the transport queues the rest until there
                # is room (rare: the upstream reads as fast as it is written to, on loopback).
                data, address = outbox.datagram(index)
                transport.sendto(data, address)
            if sent.earlier:
                # An ICMP error about an earlier query stopped a send: the error queue says
                # which query, and while it holds anything the socket stays readable.
                sock.read_errors()
        if sock.retired and not sock.pending:
            sock.close()

    def _failed(self, exchange: UDPExchange, err: OSError) -> None:
        """A query that could not be sent: its exchange fails, as an unreachable one does."""
        sock = exchange._socket
        if sock is None:
            return
        exchange.cancel()
        limited.warning("cannot send to upstream %s: %s", exchange.server, err)
        exchange.receiver.unreachable(exchange, OSError(
            err.errno, f"cannot send to {exchange.server}: {err.strerror or err}"))

    async def settle(self) -> None:
        """Wait until the sockets being bound in the background are (tests, shutdown)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    def pending(self) -> int:
        """Exchanges waiting for a reply, over every socket (retired ones too)."""
        sockets = [sock for pool in self._pools.values() for sock in pool]
        return sum(len(sock.pending) for sock in [*sockets, *self._retired]) + sum(
            len(waiting) for waiting in self._waiting.values())

    def ports(self) -> list[int]:
        """The local ports of the sockets in use now (not the retired ones)."""
        return [sock.transport.get_extra_info("sockname")[1] for pool in self._pools.values()
                for sock in pool if sock.transport is not None]

    async def ask(self, server: HostPort, message: bytes, question: bytes,
                  timeout: float) -> bytes:
        """One exchange awaited: the reply, or TimeoutError, or OSError (unreachable)."""
        loop = asyncio.get_running_loop()
        waiter = _FutureReceiver(loop.create_future())
        exchange = self.send(server, message, question, waiter, loop.time())
        try:
            return await asyncio.wait_for(waiter.future, timeout)
        finally:
            exchange.cancel()
            # Waiting for the pool to open: taken out of the queue too.
            for waiting in self._waiting.values():
                waiting[:] = [item for item in waiting if item[0] is not exchange]

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        # What was asked for goes out: the replies may still be waited for by a caller.
        self._flush()
        for waiting in self._waiting.values():
            for exchange, _ in waiting:
                exchange.receiver.unreachable(exchange, OSError("the upstream sockets are closed"))
        self._waiting.clear()
        sockets = [sock for pool in self._pools.values() for sock in pool]
        sockets += self._retired
        self._pools.clear()
        self._retired.clear()
        await _close_sockets(sockets)


class _FutureReceiver:
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[bytes]) -> None:
        self.future = future

    def replied(self, exchange: UDPExchange, data: bytes) -> None:
        if not self.future.done():
            self.future.set_result(data)

    def unreachable(self, exchange: UDPExchange, error: OSError) -> None:
        if not self.future.done():
            self.future.set_exception(error)


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
