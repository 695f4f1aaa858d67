"""One question asked of one group of upstreams, within one time budget.

The upstreams are asked in turn: each attempt gets --upstream-timeout, the next upstream is asked
on timeout, SERVFAIL or REFUSED (while a late answer from an earlier one is still welcome), and a
truncated UDP answer is fetched again over TCP from the same server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from resolver.dns import wire
from resolver.dns.addresses import HostPort
from resolver.dns.upstream_message import BadReply, UpstreamReply, scan_any
from resolver.forward.cache import Entry
from resolver.forward.counters import ForwarderStats
from resolver.forward.pool import UpstreamPool
from resolver.forward.transport import UDPExchange, tcp_exchange
from resolver.ops.logs import RateLimitedLog, printable

log = logging.getLogger("dockdns.forwarder")
limited = RateLimitedLog(log)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a resolution ended: a reply (and its cache entry, if cacheable), or an error rcode."""

    reply: UpstreamReply | None
    rcode: int
    entry: Entry | None = None


class Resolution:
    """One question asked of one group of upstreams, within one time budget."""

    def __init__(self, pool: UpstreamPool, stats: ForwarderStats, clock: Callable[[], float],
                 message: bytes, question: bytes, deadline: float) -> None:
        self.pool = pool
        self.stats = stats
        self.clock = clock
        self.message = message
        self.question = question
        self.deadline = deadline
        self.refusals = 0
        self.answers = 0
        # Each attempt's reply, by the server asked, the exchange and when it was sent.
        self.outstanding: dict[asyncio.Future[bytes],
                               tuple[HostPort, UDPExchange, float]] = {}

    def _usable(self, reply: UpstreamReply) -> bool:
        """Whether ``reply`` ends the resolution; else note why another upstream is asked."""
        self.answers += 1
        if reply.retry_elsewhere:
            if reply.rcode == wire.REFUSED:
                self.refusals += 1
            return False
        return True

    def _read(self, data: bytes) -> UpstreamReply | None:
        try:
            return scan_any(data)
        except BadReply as err:
            self.stats.bad_replies += 1
            limited.warning("unreadable upstream reply ignored: %s", printable(str(err)))
            return None

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

    async def _collect(self, until: float, current: asyncio.Future[bytes] | None
                       ) -> UpstreamReply | None:
        """Wait until ``until`` for a usable UDP reply from any upstream asked so far; return
        early with None once ``current`` (the latest attempt) has failed."""
        pool = self.pool
        while self.outstanding:
            remaining = until - self.clock()
            if remaining <= 0:
                return None
            done, _ = await asyncio.wait(list(self.outstanding), timeout=remaining,
                                         return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                server, _, sent = self.outstanding.pop(future)
                if future.cancelled():
                    continue
                if future.exception() is not None:
                    # An ICMP error: this attempt failed at once, the next upstream is asked.
                    pool.failed(server, future.exception())
                    continue
                pool.health.succeeded(server, self.clock() - sent)
                reply = self._read(future.result())
                pool.count(server, outcome_of(reply))
                if reply is None:
                    continue
                if reply.truncated:
                    # The whole answer did not fit our UDP size: ask the same server over TCP.
                    reply = await self._tcp(
                        server, min(self.clock() + pool.timeout, self.deadline))
                    if reply is not None:
                        return reply
                elif self._usable(reply):
                    return reply
            if current is not None and current not in self.outstanding:
                return None
        return None

    async def run(self, servers: list[HostPort], tcp: bool) -> UpstreamReply | None:
        pool = self.pool
        try:
            for server in servers:
                now = self.clock()
                if now >= self.deadline:
                    break
                attempt_end = min(now + pool.timeout, self.deadline)
                if server.tls_name:
                    # Over TLS whether the client came over UDP or TCP: a TLS reply is never
                    # truncated.
                    reply = await self._tls(server, attempt_end)
                    if reply is not None:
                        return reply
                    continue
                if tcp:
                    reply = await self._tcp(server, attempt_end)
                    if reply is not None:
                        return reply
                    continue
                try:
                    exchange = await pool.udp.send(server, self.message, self.question)
                except OSError as err:
                    limited.warning("cannot query upstream: %s", str(err))
                    pool.failed(server, err)
                    continue
                self.outstanding[exchange.future] = (server, exchange, now)
                reply = await self._collect(attempt_end, exchange.future)
                if reply is not None:
                    return reply
                if exchange.future in self.outstanding:
                    # No answer in time; it may still come while the next upstream is asked.
                    pool.failed(server, None)
            return await self._collect(self.deadline, None)
        finally:
            for _, exchange, _ in self.outstanding.values():
                exchange.cancel()
            self.outstanding.clear()

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
