"""The UDP listener the daemon runs: its own socket, read in batches, memo hits answered inline.

Profiling under dnsperf showed the per-datagram cost of the event loop's datagram transport
(one protocol callback and one address conversion per datagram) to be the largest part of what
dockdns spent per query beyond the kernel's own work. This listener registers the socket with the
loop itself and on each wake-up reads up to ``BATCH`` datagrams. A memo hit is answered right
there: one view lookup, one dict lookup, the ID patched in, one ``sendto``; no transport, no
handler call, no logging, no dnslib object, no metric label lookup. Everything else goes down the
same full path (``QueryHandler.answer``) as TCP, so answers are the same bytes either way.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import socket
from typing import Any

from resolver.handler import NEVER_EXPIRES, QueryHandler, servfail_for
from resolver.logs import RateLimitedLog
from resolver.ratelimit import ALLOW, SLIP, RateLimiter, slip_reply

log = logging.getLogger("dockdns.udp")
errors = RateLimitedLog(log)

# Queries waiting on the full path (mostly on upstreams) at once, per listener. Beyond it a query
# gets SERVFAIL at once: memory stays bounded under a flood of unique names, and the client
# learns immediately instead of timing out. The forwarder has its own, lower, cap on distinct
# questions (--max-inflight); this one also counts the clients that wait on a question someone
# else asked first, each in a task of its own. A waiting task (its coroutine frames and the
# query) is a few kB, so 10,000 is some 30 MB at worst, and it still lets ~2,800 full-path
# queries a second wait out the 3.5 s answer budget.
MAX_PENDING = 10_000

# Datagrams read per wake-up of the loop. Under dnsperf a wake-up finds ~60 waiting: reading them
# in one go spares the loop's per-callback cost, and the bound keeps TCP connections and timers
# served while a flood lasts.
BATCH = 64
# The largest UDP payload: a query is never larger, and reading less would cut a big one short.
# (Measured: the size asked for makes no difference to the cost of recvfrom.)
RECV_SIZE = 65_535
# Replies waiting for room in the socket's send buffer (only when the kernel says EAGAIN). Past
# this, replies are dropped as a full UDP queue would drop them; the client retries. Replies are
# at most 4 KiB (wire.MAX_UDP_SIZE), so the backlog holds 16 MiB at worst, about one second of
# replies at the rates measured here: enough to ride out a burst, not to hide a stuck socket.
MAX_BACKLOG = 4096
# Errors a UDP socket reports for an earlier send (ICMP unreachable): the socket is fine.
_SEND_ERRORS = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH)


class SocketSender:
    """A transport's ``sendto`` over a plain non-blocking socket: ``sendto``
    that queues a reply while the kernel's send buffer is full and sends it once there is room."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.backlog: collections.deque[tuple[bytes, Any]] = collections.deque()
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def sendto(self, data: bytes, addr: Any) -> None:
        # Replies are independent datagrams: one may overtake those queued before it.
        if self.closing:
            return
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.queue(data, addr)

    def queue(self, data: bytes, addr: Any) -> None:
        if len(self.backlog) >= MAX_BACKLOG:
            errors.warning("UDP send buffer full with %d replies queued; dropping replies",
                           MAX_BACKLOG)
            return
        if not self.backlog:
            self.loop.add_writer(self.sock.fileno(), self._writable)
        self.backlog.append((data, addr))

    def _writable(self) -> None:
        backlog = self.backlog
        while backlog:
            data, addr = backlog[0]
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                errors.warning("UDP reply to %s failed: %s", addr[0], err)
            backlog.popleft()
        self.loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self.backlog:
            self.loop.remove_writer(self.sock.fileno())
            self.backlog.clear()


class UDPSocketListener:
    """Serves one bound, non-blocking UDP socket until ``close()``."""

    def __init__(self, handler: QueryHandler, sock: socket.socket,
                 loop: asyncio.AbstractEventLoop, limiter: RateLimiter | None = None) -> None:
        self.handler = handler
        self.pending: set[asyncio.Task[None]] = set()
        self.sock = sock
        self.loop = loop
        self.limiter = limiter
        self.sender = SocketSender(sock, loop)
        self.fileno = sock.fileno()
        loop.add_reader(self.fileno, self._readable)

    def stop_reading(self) -> None:
        """Take no new queries (shutdown); pending ones can still send their replies."""
        self.loop.remove_reader(self.fileno)

    def close(self) -> None:
        if self.sender.closing:
            return
        self.sender.close()
        self.loop.remove_reader(self.fileno)
        self.sock.close()

    def _full_path(self, data: bytes, addr: Any) -> None:
        if len(self.pending) >= MAX_PENDING:
            reply = servfail_for(data)
            if reply is not None:
                self.sender.sendto(reply, addr)
            return
        task = self.loop.create_task(self._answer(data, addr))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _answer(self, data: bytes, addr: Any) -> None:
        reply = await self.handler.answer(data, addr[0], False)
        if reply is not None:
            try:
                self.sender.sendto(reply, addr)
            except OSError as err:
                errors.warning("UDP reply to %s failed: %s", addr[0], err)

    def _limited(self, data: bytes, addr: Any, verdict: int) -> None:
        """A query over its client's rate: an empty TC=1 reply (every ``slip``-th) or nothing."""
        if verdict == SLIP:
            reply = slip_reply(data)
            if reply is not None:
                self.sender.sendto(reply, addr)

    def _readable(self) -> None:
        # The hot path. Everything is looked up once per batch: the snapshot (and with it the
        # view table) is only swapped by other loop callbacks, never while this one runs.
        recvfrom = self.sock.recvfrom
        sendto = self.sock.sendto
        handler = self.handler
        by_client = handler.views.by_client
        counts = handler.stats.counts
        limiter = self.limiter
        # One clock reading serves the whole batch: reading it takes well under a millisecond,
        # and a memo entry read that much after its TTL ticked still says no more than the
        # TTL it was cached with.
        now = handler.clock()
        for _ in range(BATCH):
            try:
                data, addr = recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                if err.errno in _SEND_ERRORS:
                    continue
                errors.warning("UDP receive failed: %s", err)
                return
            try:
                if limiter is not None:
                    verdict = limiter.check(addr[0], now)
                    if verdict != ALLOW:
                        self._limited(data, addr, verdict)
                        continue
                view = by_client.get(addr[0])
                if view is not None:
                    key = data[2:]
                    entry = view.memo_udp.get(key)
                    if entry is not None:
                        until = entry[0]
                        # Local answers never expire; cached ones are renewed as TTLs tick.
                        if until is not NEVER_EXPIRES and until <= now:
                            entry = view.renewed(key, entry, False, now)
                        if entry is not None:
                            counts[entry[2]] += 1
                            reply = data[:2] + next(entry[1])
                            try:
                                sendto(reply, addr)
                            except (BlockingIOError, InterruptedError):
                                self.sender.queue(reply, addr)
                            continue
                self._full_path(data, addr)
            except OSError as err:
                errors.warning("UDP reply to %s failed: %s", addr[0], err)
            except Exception:
                errors.exception("UDP query from %s failed", addr[0])
