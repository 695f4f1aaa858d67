"""The UDP listener the daemon runs: its own socket, read in batches, memo hits answered inline.

Profiling under dnsperf showed the per-datagram cost of the event loop's datagram transport
(one protocol callback and one address conversion per datagram) to be the largest part of what
dockdns spent per query beyond the kernel's own work. This listener registers the socket with the
loop itself and on each wake-up reads up to ``BATCH`` datagrams: with one recvmmsg(2) where libc
has it (``resolver.net.mmsg``), the replies of the batch's memo hits written over their queries
and going out together with one sendmmsg(2), and another batch read at once while each comes back
full; else with one recvfrom and one sendto each. A memo hit is answered right there: one
view lookup, one dict lookup, the ID patched in; no transport, no handler call, no logging, no
dnslib object, no metric label lookup. Everything else goes down the same full path
(``QueryHandler.answer_served``) as TCP, so answers are the same bytes either way; a query
waiting on an upstream is a callback, not a task.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from functools import partial
from typing import Any

from resolver.answer.chain import Pending
from resolver.answer.handler import QueryHandler, servfail_for
from resolver.answer.memo import NEVER_EXPIRES
from resolver.answer.views import CLIENT_LIMIT
from resolver.net import mmsg
from resolver.net.libc import FLAGS_WORD, LEN_WORD, WORDS_PER_MSG
from resolver.net.mmsg import EARLIER_ERRORS, MSG_TRUNC, SLOT_SIZE, BatchSocket, Outbox
from resolver.ops.logs import RateLimitedLog
from resolver.serve.ratelimit import ALLOW, SLIP, RateLimiter, slip_reply

log = logging.getLogger("dockdns.udp")
errors = RateLimitedLog(log)

# Queries waiting on the full path (mostly on upstreams) at once, per listener. Beyond it a query
# gets SERVFAIL at once: memory stays bounded under a flood of unique names, and the client
# learns immediately instead of timing out. The forwarder has its own, lower, cap on distinct
# questions (--max-inflight); this one also counts the clients that wait on a question someone
# else asked first. A waiting query (its callbacks, request and bytes) is about a kB, so 10,000
# is some 10 MB at worst, and it still lets ~2,800 full-path queries a second wait out the
# 3.5 s answer budget.
MAX_PENDING = 10_000

# Datagrams read per wake-up of the loop. Under dnsperf a wake-up finds ~60 waiting: reading them
# in one go spares the loop's per-callback cost, and the bound keeps TCP connections and timers
# served while a flood lasts.
BATCH = 64
# Batches read per wake-up when each comes back full (recvmmsg's SLOTS, 64): under a flood the
# queue holds hundreds, and every return to the loop costs an epoll_wait that only says so again.
# The bound keeps TCP, timers and the full path's tasks served while a flood lasts.
BATCHES_PER_WAKEUP = 4
# The largest UDP payload: reading less would cut a big datagram short without telling.
# (Measured: the size asked for makes no difference to the cost of recvfrom.)
RECV_SIZE = 65_535
# The longest query taken, on either path: a batch slot's size (see resolver/net/mmsg.py).
# A query is
# a few hundred bytes; a longer datagram is dropped, as the batched path must.
MAX_QUERY_SIZE = SLOT_SIZE
# Replies waiting for room in the socket's send buffer (only when the kernel says EAGAIN). Past
# this, replies are dropped as a full UDP queue would drop them; the client retries. Replies are
# at most 4 KiB (wire.MAX_UDP_SIZE), so the backlog holds 16 MiB at worst, about one second of
# replies at the rates measured here: enough to ride out a burst, not to hide a stuck socket.
MAX_BACKLOG = 4096
# Errors a UDP socket reports for an earlier send (ICMP unreachable): the socket is fine.
_SEND_ERRORS = EARLIER_ERRORS


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
                 loop: asyncio.AbstractEventLoop, limiter: RateLimiter | None = None,
                 batched: bool = True) -> None:
        self.handler = handler
        # Queries waiting on an upstream, by a token of their own: the query and its client's
        # address (for the SERVFAIL a shutdown gives them), and that address packed, as the
        # batch read it. No task: see ``_full_path``.
        self.waiting: dict[int, tuple[bytes, Any, bytes | None]] = {}
        self.next_token = 0
        self.drained: asyncio.Event | None = None  # set when ``waiting`` empties (shutdown)
        self.sock = sock
        self.loop = loop
        self.limiter = limiter
        self.sender = SocketSender(sock, loop)
        self.fileno = sock.fileno()
        self.batch: BatchSocket | None = None
        # The full path's replies (answers that came from upstreams), collected as they settle
        # and sent together with one sendmmsg once the loop has run the callbacks at hand: the
        # client is woken once for a burst of them, not once each.
        self.outbox: Outbox | None = None
        self.flush_due = False
        if batched and mmsg.available() and sock.family in (socket.AF_INET, socket.AF_INET6):
            self.batch = BatchSocket(sock)
            self.outbox = Outbox(sock.family)
        # Client addresses as the batch slots hold them (an int for IPv4, bytes for IPv6) to
        # their text, which views are looked up by; bounded like the view table's own cache.
        self.peers: dict[int | bytes, str] = {}
        loop.add_reader(self.fileno, self._readable if self.batch is None else self._read_batch)

    def stop_reading(self) -> None:
        """Take no new queries (shutdown); pending ones can still send their replies."""
        self.loop.remove_reader(self.fileno)

    def close(self) -> None:
        if self.sender.closing:
            return
        self._flush_replies()
        self.sender.close()
        self.loop.remove_reader(self.fileno)
        self.sock.close()

    def _full_path(self, data: bytes, addr: Any, name: bytes | None = None) -> None:
        waiting = self.waiting
        if len(waiting) >= MAX_PENDING:
            reply = servfail_for(data)
            if reply is not None:
                self.sender.sendto(reply, addr)
            return
        answer = self.handler.answer_served(data, addr[0], False)
        if not isinstance(answer, Pending):
            if answer is not None:
                self._send(answer, addr)
            return
        # Waiting on an upstream: the reply goes out from the callback its datagram came in.
        self.next_token += 1
        token = self.next_token
        waiting[token] = (data, addr, name)
        answer.then(partial(self._answered, token))

    def _answered(self, token: int, settled: Pending[bytes | None]) -> None:
        item = self.waiting.pop(token, None)
        if item is None:
            return  # given up at shutdown, and answered SERVFAIL then
        if not self.waiting and self.drained is not None:
            self.drained.set()
        reply = settled.result()  # answer_served settles with a value, never an error
        if reply is None or self.sender.closing:
            return
        name = item[2]
        outbox = self.outbox
        if name is None or outbox is None:
            self._send(reply, item[1])
            return
        if outbox.full:
            self._flush_replies()
        if not outbox.put(reply, name, item[1]):  # longer than a slot: never, for UDP
            self._send(reply, item[1])
            return
        if not self.flush_due:
            self.flush_due = True
            self.loop.call_soon(self._flush_replies)

    def _flush_replies(self) -> None:
        """Send the full path's replies collected since the last flush."""
        self.flush_due = False
        outbox = self.outbox
        if outbox is None or not outbox.tags:
            return
        flushed = outbox.flush(self.fileno, self.sock.sendto)
        for addr, err in flushed.failed:
            if err.errno not in _SEND_ERRORS:
                errors.warning("UDP reply to %s failed: %s", addr[0], err)
        for index in range(len(flushed.blocked)):
            self.sender.queue(*outbox.datagram(index))

    def _send(self, reply: bytes, addr: Any) -> None:
        try:
            self.sender.sendto(reply, addr)
        except OSError as err:
            errors.warning("UDP reply to %s failed: %s", addr[0], err)

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` for the queries waiting on upstreams; answer those still
        waiting then SERVFAIL. Returns how many that was."""
        if self.waiting and timeout > 0:
            self.drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), timeout)
        left = list(self.waiting.values())
        self.waiting.clear()
        for data, addr, _ in left:
            reply = servfail_for(data)
            if reply is not None and not self.sender.closing:
                with contextlib.suppress(OSError):
                    self.sender.sendto(reply, addr)
        return len(left)

    def _limited(self, data: bytes, addr: Any, verdict: int) -> None:
        """A query over its client's rate: an empty TC=1 reply (every ``slip``-th) or nothing."""
        if verdict == SLIP:
            reply = slip_reply(data)
            if reply is not None:
                self.sender.sendto(reply, addr)

    def _readable(self) -> None:
        # One datagram at a time, where recvmmsg is missing: the handler's own memo lookup
        # (``answer_fast``), then the full path. The batched path below inlines that lookup.
        recvfrom = self.sock.recvfrom
        sendto = self.sock.sendto
        handler = self.handler
        answer_fast = handler.answer_fast
        limiter = self.limiter
        now = handler.clock()  # one reading for the batch: the rate limiter's only use of it
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
            if len(data) > MAX_QUERY_SIZE:
                handler.stats.dropped += 1
                continue
            try:
                if limiter is not None:
                    verdict = limiter.check(addr[0], now)
                    if verdict != ALLOW:
                        self._limited(data, addr, verdict)
                        continue
                reply = answer_fast(data, addr[0], False)
                if reply is None:
                    self._full_path(data, addr)
                    continue
                try:
                    sendto(reply, addr)
                except (BlockingIOError, InterruptedError):
                    self.sender.queue(reply, addr)
            except OSError as err:
                errors.warning("UDP reply to %s failed: %s", addr[0], err)
            except Exception:
                errors.exception("UDP query from %s failed", addr[0])

    # --- the batched path (recvmmsg/sendmmsg) -------------------------------------------------

    def _read_batch(self) -> None:
        # A full batch means more may be waiting: read on (up to BATCHES_PER_WAKEUP batches)
        # rather than going back to the loop, whose epoll_wait would only say so again.
        for _ in range(BATCHES_PER_WAKEUP):
            if self._serve_batch() < mmsg.SLOTS:
                return

    def _serve_batch(self) -> int:
        # The hot path with batched system calls: the decisions of ``QueryHandler.answer_fast``,
        # inlined (a call per datagram would cost ~80 ns) and made on the batch's slots instead
        # of on bytes and address tuples. Returns how many datagrams were read.
        batch = self.batch
        assert batch is not None
        try:
            count = batch.receive()
        except OSError as err:
            if err.errno not in _SEND_ERRORS:
                errors.warning("UDP receive failed: %s", err)
            return 0
        handler = self.handler
        by_client = handler.views.by_client
        counts = handler.stats.counts
        limiter = self.limiter
        peers = self.peers
        words = batch.receive_words
        received = batch.received_view
        lengths = batch.send_lengths
        name_words = batch.name_words
        ipv4 = batch.ipv4
        now = handler.clock()  # one reading for the batch, as in ``_readable``
        # Memo hits are answered in their own slots; the replies of a run of them go in one
        # sendmmsg, sent when the run ends: at the end of the batch, or at a query that is not
        # answered inline (in steady state there is none, and the batch is one call).
        first = 0
        for slot in range(count):
            header = slot * WORDS_PER_MSG
            length = words[header + LEN_WORD]
            if words[header + FLAGS_WORD] & MSG_TRUNC:  # longer than MAX_QUERY_SIZE
                handler.stats.dropped += 1
            else:
                try:
                    # An IPv4 sockaddr's address is its second 32-bit word.
                    peer = name_words[slot * 4 + 1] if ipv4 else batch.address_key(slot)
                    client = peers.get(peer)
                    if client is None:
                        client = self._remember_peer(peer, slot)
                    verdict = ALLOW if limiter is None else limiter.check(client, now)
                    if verdict != ALLOW:
                        self._limited(batch.datagram(slot, length), batch.address(slot),
                                      verdict)
                    else:
                        start = slot * SLOT_SIZE
                        view = by_client.get(client)
                        entry = None
                        if view is not None:
                            key = received[start + 2 : start + length].tobytes()
                            entry = view.memo_udp.get(key)
                            if entry is not None:
                                until = entry.until
                                # Local answers never expire; cached ones are renewed as TTLs
                                # tick.
                                if until is not NEVER_EXPIRES and until <= now:
                                    entry = view.renewed(key, entry, False, now)
                        if entry is None:
                            self._full_path(batch.datagram(slot, length), batch.address(slot),
                                            batch.name(slot))
                        else:
                            counts[entry.slot] += 1
                            body = next(entry.replies)
                            size = len(body) + 2
                            if size <= SLOT_SIZE:  # always, for UDP replies
                                # Over the query, after its ID: the reply is complete.
                                received[start + 2 : start + size] = body
                                lengths[2 * slot + 1] = size
                                continue
                            self.sender.sendto(received[start : start + 2].tobytes() + body,
                                               batch.address(slot))
                except Exception:
                    errors.exception("UDP query from %s failed", batch.address(slot)[0])
            # This slot holds no reply: the run of replies before it goes now.
            if slot > first:
                self._send_batch(batch, first, slot)
            first = slot + 1
        if count > first:
            self._send_batch(batch, first, count)
        return count

    def _remember_peer(self, peer: int | bytes, slot: int) -> str:
        assert self.batch is not None
        if len(self.peers) >= CLIENT_LIMIT:
            self.peers.clear()
        client = self.batch.client(self.batch.address_key(slot))
        self.peers[peer] = client
        return client

    def _send_batch(self, batch: BatchSocket, first: int, end: int) -> None:
        """Send the replies in slots ``first`` .. ``end - 1``; what the kernel has no room for
        waits in the sender's queue."""
        while first < end:
            try:
                sent = batch.send(first, end - first)
            except OSError as err:
                # The first of them cannot go (e.g. an ICMP error reported late): skip it only.
                if err.errno not in _SEND_ERRORS:
                    errors.warning("UDP reply to %s failed: %s",
                                   batch.outgoing_slot(first)[1][0], err)
                first += 1
                continue
            if sent == 0:
                # The send buffer is full: the rest wait in the sender's queue.
                for slot in range(first, end):
                    self.sender.queue(*batch.outgoing_slot(slot))
                return
            first += sent
