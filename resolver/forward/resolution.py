"""One question asked of one group of upstreams, within one time budget.

The upstreams are asked in turn: each attempt gets --upstream-timeout, the next upstream is asked
on timeout, SERVFAIL or REFUSED (while a late answer from an earlier one is still welcome), and a
truncated UDP answer is fetched again over TCP from the same server.

A resolution over UDP has no task of its own: it is a small state machine that the transport's
callbacks (a reply matched, an ICMP error) and the shared deadlines (resolver/forward/timers.py)
move on, and that calls ``done`` once, with the usable reply or None. Only attempts over TCP or
TLS (TCP clients, truncated answers, tls:// upstreams) run as a task, since asyncio's streams
are coroutines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple

from resolver.answer.chain import ForwardedReply, Pending, Request
from resolver.dns import wire
from resolver.dns.addresses import HostPort
from resolver.dns.upstream_message import BadReply, UpstreamReply, scan_any
from resolver.forward.cache import Entry
from resolver.forward.counters import ForwarderStats
from resolver.forward.pool import UpstreamPool
from resolver.forward.timers import Deadlines
from resolver.forward.transport import UDPExchange, tcp_exchange
from resolver.ops.logs import RateLimitedLog, printable

log = logging.getLogger("dockdns.forwarder")
limited = RateLimitedLog(log)

# The token of a resolution's own deadline (its answer budget) among the shared deadlines;
# an attempt's deadline has the attempt's exchange as its token.
BUDGET = object()


class Outcome(NamedTuple):
    """How a resolution ended: a reply (and its cache entry, if cacheable), or an error rcode."""

    reply: UpstreamReply | None
    rcode: int
    entry: Entry | None = None
    jostled: bool = False  # ended early to make room for another group's question


Done = Callable[["Resolution", UpstreamReply | None], None]


class Resolution:
    """One question asked of one group of upstreams, within one time budget."""

    __slots__ = ("pool", "stats", "clock", "message", "question", "deadline", "deadlines",
                 "done", "servers", "tcp", "next_server", "outstanding", "current", "task",
                 "finished", "cancelled", "jostled", "refusals", "answers", "waiters",
                 "flight", "group", "marked", "budget_key", "attempt_key", "query")

    def __init__(self, pool: UpstreamPool, stats: ForwarderStats, clock: Callable[[], float],
                 message: bytes, question: bytes, start: float, budget: float,
                 deadlines: Deadlines, done: Done) -> None:
        self.pool = pool
        self.stats = stats
        self.clock = clock
        self.message = message
        self.question = question
        self.deadline = start + budget
        self.deadlines = deadlines
        self.done = done
        self.servers: Sequence[HostPort] = ()
        self.tcp = False
        self.next_server = 0
        # The UDP attempts sent and not answered yet (a late answer is still welcome).
        self.outstanding: list[UDPExchange] = []
        self.current: UDPExchange | None = None  # the latest UDP attempt, while it is the one
        self.task: asyncio.Task[UpstreamReply | None] | None = None  # a TCP or TLS attempt
        self.finished = False
        self.cancelled = False  # ended unanswered by shutdown
        self.jostled = False  # ended unanswered to make room
        self.refusals = 0
        self.answers = 0
        # What the forward stage keeps here: each waiting client's request and pending answer,
        # its in-flight key, its destination group, the loop guard's mark.
        self.waiters: list[tuple[Request, Pending[ForwardedReply]]] = []
        self.flight: tuple[bytes, bool] = (b"", False)
        self.group: tuple[HostPort, ...] = ()
        self.marked = b""
        self.query: wire.Query | None = None  # the first client's, for the logs
        self.budget_key = deadlines.add(budget, self, BUDGET, start)
        self.attempt_key = -1  # the current UDP attempt's deadline

    # --- the steps ------------------------------------------------------------------------

    def start(self, servers: Sequence[HostPort], tcp: bool) -> None:
        self.servers = servers
        self.tcp = tcp
        self._advance()

    def _advance(self) -> None:
        """Ask the next upstream; with none left, wait for late answers until the budget ends,
        or end now if none can come."""
        pool = self.pool
        servers = self.servers
        self.current = None
        if self.attempt_key >= 0:
            self.deadlines.cancel(self.attempt_key)
            self.attempt_key = -1
        while not self.finished:
            index = self.next_server
            if index >= len(servers):
                break
            now = self.clock()
            if now >= self.deadline:
                break
            server = servers[index]
            self.next_server = index + 1
            timeout = pool.timeout
            if server.tls_name or self.tcp:
                # Over TLS whether the client came over UDP or TCP: a TLS reply is never
                # truncated.
                self._stream(server, min(now + timeout, self.deadline))
                return
            try:
                exchange = pool.udp.send(server, self.message, self.question, self, now)
            except OSError as err:
                limited.warning("cannot query upstream: %s", str(err))
                pool.failed(server, err)
                continue
            self.outstanding.append(exchange)
            self.current = exchange
            if now + timeout < self.deadline:
                self.attempt_key = self.deadlines.add(timeout, self, exchange, now)
            return
        self._end_if_exhausted()

    def _end_if_exhausted(self) -> None:
        """No reply can come any more: every upstream asked, none outstanding."""
        if (not self.finished and self.current is None and self.task is None
                and not self.outstanding and self.next_server >= len(self.servers)):
            self._finish(None)

    def _finish(self, reply: UpstreamReply | None) -> None:
        self.finished = True
        deadlines = self.deadlines
        deadlines.cancel(self.budget_key)
        if self.attempt_key >= 0:
            deadlines.cancel(self.attempt_key)
        for exchange in self.outstanding:
            exchange.cancel()
        self.outstanding.clear()
        self.current = None
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.done(self, reply)

    def cancel(self, jostled: bool = False) -> None:
        """End it unanswered now: jostled out (its clients get SERVFAIL) or shut down."""
        if self.finished:
            return
        if jostled:
            self.jostled = True
        else:
            self.cancelled = True
        self._finish(None)

    # --- what the transport and the deadlines report ----------------------------------------

    def replied(self, exchange: UDPExchange, data: bytes) -> None:
        if self.finished:
            return
        self.outstanding.remove(exchange)
        pool = self.pool
        server = exchange.server
        pool.health.succeeded(server, self.clock() - exchange.sent_at)
        reply = self._read(data)
        pool.count(server, outcome_of(reply))
        if reply is not None:
            if reply.truncated:
                # The whole answer did not fit our UDP size: ask the same server over TCP.
                if self.task is None:
                    self._stream(server, min(self.clock() + pool.timeout, self.deadline),
                                 tcp=True)
                    if exchange is self.current:
                        self.current = None
                    return
            elif self._usable(reply):
                self._finish(reply)
                return
        if exchange is self.current:
            self._advance()
        else:
            self._end_if_exhausted()

    def unreachable(self, exchange: UDPExchange, error: OSError) -> None:
        if self.finished:
            return
        if exchange in self.outstanding:
            self.outstanding.remove(exchange)
        # An ICMP error: this attempt failed at once, the next upstream is asked.
        self.pool.failed(exchange.server, error)
        if exchange is self.current:
            self._advance()
        else:
            self._end_if_exhausted()

    def expired(self, token: object) -> None:
        if self.finished:
            return
        current = self.current
        if token is BUDGET:
            if current is not None and current.pending:
                self.pool.failed(current.server, None)
            self._finish(None)
        elif token is current and current is not None and current.pending:
            self.attempt_key = -1
            # No answer in time; it may still come while the next upstream is asked.
            self.pool.failed(current.server, None)
            self._advance()

    # --- attempts over TCP and TLS -------------------------------------------------------------

    def _stream(self, server: HostPort, until: float, tcp: bool = False) -> None:
        attempt = self._tls(server, until) if server.tls_name and not tcp else \
            self._tcp(server, until)
        task = asyncio.get_running_loop().create_task(attempt, name="upstream-stream")
        self.task = task
        task.add_done_callback(self._streamed)

    def _streamed(self, task: asyncio.Task[UpstreamReply | None]) -> None:
        if task is not self.task:
            return  # cancelled when the resolution ended
        self.task = None
        if self.finished:
            return
        reply: UpstreamReply | None = None
        if not task.cancelled():
            if task.exception() is not None:
                log.error("upstream exchange failed", exc_info=task.exception())
            else:
                reply = task.result()
        if reply is not None:
            self._finish(reply)
        elif self.current is None or not self.current.pending:
            self._advance()

    def _read(self, data: bytes) -> UpstreamReply | None:
        try:
            return scan_any(data)
        except BadReply as err:
            self.stats.bad_replies += 1
            limited.warning("unreadable upstream reply ignored: %s", printable(str(err)))
            return None

    def _usable(self, reply: UpstreamReply) -> bool:
        """Whether ``reply`` ends the resolution; else note why another upstream is asked."""
        self.answers += 1
        if reply.retry_elsewhere:
            if reply.rcode == wire.REFUSED:
                self.refusals += 1
            return False
        return True

    async def _tcp(self, server: HostPort, until: float) -> UpstreamReply | None:
        pool = self.pool
        sent = self.clock()
        try:
            data = await tcp_exchange(server, self.message, self.question,
                                      max(0.0, until - sent), pool.udp.stats)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as err:
            log.debug("TCP query to %s failed: %r", server, err)
            pool.failed(server, err)
            return None
        # Not an RTT sample: a TCP exchange includes the handshake.
        pool.health.succeeded(server)
        reply = self._read(data)
        pool.count(server, outcome_of(reply))
        return reply if reply is not None and self._usable(reply) else None

    async def _tls(self, server: HostPort, until: float) -> UpstreamReply | None:
        pool = self.pool
        sent = self.clock()
        try:
            data = await pool.tls.exchange(server, self.message, self.question,
                                           max(0.0, until - sent))
        except (OSError, TimeoutError) as err:
            limited.warning("DNS over TLS query to %s failed: %s", server, str(err))
            pool.failed(server, err)
            return None
        # The connection is reused: after the first, this is the server's round trip.
        pool.health.succeeded(server, self.clock() - sent)
        reply = self._read(data)
        pool.count(server, outcome_of(reply))
        return reply if reply is not None and self._usable(reply) else None

    @property
    def failure_rcode(self) -> int:
        # REFUSED from every upstream that answered at all is passed on (the name is not theirs
        # to answer); anything else that failed is SERVFAIL.
        if self.answers and self.refusals == self.answers:
            return wire.REFUSED
        return wire.SERVFAIL


def outcome_of(reply: UpstreamReply | None) -> str:
    """The ``outcome`` label of dockdns_upstream_requests_total for one reply."""
    if reply is None:
        return "bad_reply"
    if reply.truncated:
        return "truncated"
    return {wire.SERVFAIL: "servfail", wire.REFUSED: "refused",
            wire.FORMERR: "formerr"}.get(reply.rcode, "ok")
