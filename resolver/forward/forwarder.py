"""Forwarding: names outside the registry are answered from the cache or asked upstream.

One ``forward`` call: a fresh cache entry is rendered for the client at once (and memoized by the
handler until its TTLs tick down); otherwise the question joins the identical one already in
flight, or starts one (bounded by --max-inflight). A resolution asks the zone's or the default
upstreams in turn: each attempt gets --upstream-timeout, the next upstream is asked on timeout,
SERVFAIL or REFUSED (while a late answer from an earlier one is still welcome), a truncated UDP
answer is fetched again over TCP, and the whole thing ends within ``ANSWER_BUDGET``. When it fails,
an expired entry is served stale (RFC 8767) if there is one, else SERVFAIL.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from resolver.answer.handler import ForwardedReply
from resolver.answer.views import View
from resolver.config.settings import Config, HostPort
from resolver.dns import wire
from resolver.dns.reverse import is_private_reverse
from resolver.dns.upstream_message import (
    BadReply,
    UpstreamReply,
    cache_key,
    probe_query,
    render,
    scan_any,
    upstream_query,
)
from resolver.forward.cache import STALE_TTL, Cache, Entry
from resolver.forward.health import UpstreamHealth
from resolver.forward.special_names import SpecialSettings, special_reply
from resolver.forward.transport import (
    UDPExchange,
    UpstreamUDP,
    tcp_exchange,
)
from resolver.forward.upstreams import UpstreamSource
from resolver.ops.logs import RateLimitedLog, printable
from resolver.ops.stats import SOURCE_CACHE, SOURCE_FORWARD, SOURCE_LOCAL, QueryStats

log = logging.getLogger("dockdns.forwarder")
limited = RateLimitedLog(log)

# Every client gets an answer (SERVFAIL at worst) this long after its query reached us: glibc and
# musl stubs give up after 5 s, so 3.5 s leaves room for the client's own path and a loaded host.
ANSWER_BUDGET = 3.5
# RFC 8767 5 "client response timer": with a stale entry at hand, a client waits at most this long
# for the refresh before getting the stale answer (the refresh goes on for the next client).
STALE_ANSWER_AFTER = 1.8
# How often resolv.conf is checked and upstreams that are down are probed.
MAINTENANCE_INTERVAL = 1.0


@dataclass(slots=True)
class ForwarderStats:
    cache_hits: int = 0
    cache_misses: int = 0  # queries that found no fresh answer in the cache
    stale_answers: int = 0
    resolutions: int = 0  # questions that went upstream
    coalesced: int = 0  # queries that joined a question already in flight
    failures: int = 0  # resolutions that ended without a usable answer
    private_reverse: int = 0  # reverse lookups of private addresses answered NXDOMAIN here
    overflow: int = 0  # queries refused because --max-inflight questions were in flight
    bad_replies: int = 0  # matched replies that could not be read


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a resolution ended: a reply (and its cache entry, if cacheable), or an error rcode."""

    reply: UpstreamReply | None
    rcode: int
    entry: Entry | None = None


class _Resolution:
    """One question asked of one group of upstreams, within one time budget."""

    def __init__(self, forwarder: UpstreamForwarder, message: bytes, question: bytes,
                 deadline: float) -> None:
        self.forwarder = forwarder
        self.message = message
        self.question = question
        self.deadline = deadline
        self.refusals = 0
        self.answers = 0
        self.outstanding: dict[asyncio.Future[bytes], tuple[HostPort, UDPExchange]] = {}

    def _clock(self) -> float:
        return self.forwarder.clock()

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
            self.forwarder.stats.bad_replies += 1
            limited.warning("unreadable upstream reply ignored: %s", printable(str(err)))
            return None

    async def _tcp(self, server: HostPort, until: float) -> UpstreamReply | None:
        forwarder = self.forwarder
        try:
            data = await tcp_exchange(server, self.message, self.question,
                                      max(0.0, until - self._clock()), forwarder.udp.stats)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as err:
            log.debug("TCP query to %s failed: %r", server, err)
            forwarder.health.failed(server)
            forwarder.count(server, "timeout" if isinstance(err, TimeoutError) else "error")
            return None
        forwarder.health.succeeded(server)
        reply = self._read(data)
        forwarder.count(server, outcome_of(reply))
        return reply if reply is not None and self._usable(reply) else None

    async def _collect(self, until: float, current: asyncio.Future[bytes] | None
                       ) -> UpstreamReply | None:
        """Wait until ``until`` for a usable UDP reply from any upstream asked so far; return
        early with None once ``current`` (the latest attempt) has failed."""
        forwarder = self.forwarder
        while self.outstanding:
            remaining = until - self._clock()
            if remaining <= 0:
                return None
            done, _ = await asyncio.wait(list(self.outstanding), timeout=remaining,
                                         return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                server, _ = self.outstanding.pop(future)
                if future.cancelled():
                    continue
                forwarder.health.succeeded(server)
                reply = self._read(future.result())
                forwarder.count(server, outcome_of(reply))
                if reply is None:
                    continue
                if reply.truncated:
                    # The whole answer did not fit our UDP size: ask the same server over TCP.
                    reply = await self._tcp(
                        server, min(self._clock() + forwarder.timeout, self.deadline))
                    if reply is not None:
                        return reply
                elif self._usable(reply):
                    return reply
            if current is not None and current not in self.outstanding:
                return None
        return None

    async def run(self, servers: list[HostPort], tcp: bool) -> UpstreamReply | None:
        forwarder = self.forwarder
        try:
            for server in servers:
                now = self._clock()
                if now >= self.deadline:
                    break
                attempt_end = min(now + forwarder.timeout, self.deadline)
                if tcp:
                    reply = await self._tcp(server, attempt_end)
                    if reply is not None:
                        return reply
                    continue
                try:
                    exchange = await forwarder.udp.send(server, self.message, self.question)
                except OSError as err:
                    limited.warning("cannot query upstream: %s", str(err))
                    forwarder.health.failed(server)
                    forwarder.count(server, "error")
                    continue
                self.outstanding[exchange.future] = (server, exchange)
                reply = await self._collect(attempt_end, exchange.future)
                if reply is not None:
                    return reply
                if exchange.future in self.outstanding:
                    # No answer in time; it may still come while the next upstream is asked.
                    forwarder.health.failed(server)
                    forwarder.count(server, "timeout")
            return await self._collect(self.deadline, None)
        finally:
            for _, exchange in self.outstanding.values():
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


class CacheCounters:
    """The cache as dockdns_cache_* sees it: the forwarder's own hits plus the memo's hits on
    cached answers (those never reach the forwarder again until their TTL ticks)."""

    def __init__(self, forwarder: UpstreamForwarder, queries: QueryStats) -> None:
        self._forwarder = forwarder
        self._queries = queries

    @property
    def entries(self) -> int:
        return len(self._forwarder.cache)

    @property
    def hits(self) -> int:
        stats = self._forwarder.stats
        return stats.cache_hits + stats.stale_answers + self._queries.memo_hits_from(SOURCE_CACHE)

    @property
    def misses(self) -> int:
        return self._forwarder.stats.cache_misses


class UpstreamForwarder:
    """Implements the handler's ``Forwarder`` protocol, and the metrics' ``UpstreamMetrics``."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.source = UpstreamSource(config)
        self.cache = Cache(config.cache_size, config.cache_min_ttl, config.cache_max_ttl,
                           config.serve_stale)
        self.health = UpstreamHealth()
        self.udp = UpstreamUDP()
        self.timeout = config.upstream_timeout
        self.max_inflight = config.max_inflight
        self.bogus_priv = config.bogus_priv
        self.special = SpecialSettings.from_config(config)
        self.stats = ForwarderStats()
        # Per (upstream, outcome): as many as upstreams ever configured times the few outcomes.
        self.requests: dict[tuple[str, str], int] = {}
        # At most max_inflight questions (checked before a resolution starts).
        self._inflight: dict[tuple[bytes, bool], asyncio.Task[Outcome]] = {}
        # At most one probe per configured upstream that is down.
        self._probes: dict[HostPort, asyncio.Task[None]] = {}

    # --- lifecycle --------------------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        """Apply a re-read config (SIGHUP): upstreams, zones, timeouts and cache bounds change for
        the next question; questions in flight finish with the servers they started with."""
        self.source.reconfigure(config)
        self.health.forget_except(self.source.table.servers())
        self.timeout = config.upstream_timeout
        self.max_inflight = config.max_inflight
        self.bogus_priv = config.bogus_priv
        self.special = SpecialSettings.from_config(config)
        cache = self.cache
        if (cache.size, cache.min_ttl, cache.max_ttl) != (
                config.cache_size, config.cache_min_ttl, config.cache_max_ttl):
            # Entries were stored with the old TTL bounds: start afresh rather than mix them.
            self.cache = Cache(config.cache_size, config.cache_min_ttl, config.cache_max_ttl,
                               config.serve_stale)
        self.cache.serve_stale = config.serve_stale

    def count(self, server: HostPort, outcome: str) -> None:
        key = (str(server), outcome)
        self.requests[key] = self.requests.get(key, 0) + 1

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def rejected_replies(self) -> dict[str, int]:
        """Upstream replies dropped, by reason (transport.TransportStats.reject, and
        ``unreadable``: matched to a query but not a DNS message we can read)."""
        rejected = dict(self.udp.stats.rejected)
        if self.stats.bad_replies:
            rejected["unreadable"] = self.stats.bad_replies
        return rejected

    def start(self) -> None:
        # Quiet: the upstreams are logged once the daemon is up (a failed start says one line).
        self.source.load(quiet=True)

    async def run(self) -> None:
        """Background upkeep: follow resolv.conf, probe the upstreams that are down."""
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL)
            if self.source.poll():
                self.health.forget_except(self.source.table.servers())
            for server in self.health.down():
                if server not in self._probes:
                    self._probes[server] = asyncio.get_running_loop().create_task(
                        self._probe(server), name="upstream-probe")

    async def _probe(self, server: HostPort) -> None:
        try:
            await self._ask_alive(server)
        finally:
            self._probes.pop(server, None)

    async def _ask_alive(self, server: HostPort) -> None:
        message = probe_query(0)
        try:
            exchange = await self.udp.send(server, message, message[wire.HEADER.size:])
        except OSError:
            return
        try:
            await asyncio.wait_for(exchange.future, self.timeout)
        except TimeoutError:
            return
        finally:
            exchange.cancel()
        self.health.succeeded(server)

    async def close(self) -> None:
        tasks = [*self._inflight.values(), *self._probes.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self.udp.close()

    # --- answering --------------------------------------------------------------------------

    def _from_entry(self, entry: Entry, query: wire.Query, max_size: int, now: float,
                    source: str) -> ForwardedReply:
        reply = render(entry.reply, query, entry.ttls, entry.age(now), max_size)
        if self.cache.size <= 0:  # without a cache, these bytes are given only this once
            return ForwardedReply(reply, entry.reply.rcode, source)
        # The same bytes are right until the TTLs tick down; then the memo renders them again
        # from this entry, for as long as it is fresh.

        def renew(later: float) -> tuple[float, bytes] | None:
            if not entry.fresh(later):
                return None
            return entry.memo_until(later), render(entry.reply, query, entry.ttls,
                                                   entry.age(later), max_size)[2:]

        return ForwardedReply(reply, entry.reply.rcode, source, entry.memo_until(now), renew)

    def _stale(self, entry: Entry, query: wire.Query, max_size: int,
               now: float) -> ForwardedReply:
        self.stats.stale_answers += 1
        reply = render(entry.reply, query, entry.ttls, 0, max_size, fixed_ttl=STALE_TTL)
        # Within the failure recheck window the stale bytes may be reused as they are.
        memo_until = entry.stale_until if entry.stale_until > now else None
        return ForwardedReply(reply, entry.reply.rcode, SOURCE_CACHE, memo_until)

    @staticmethod
    def _error(query: wire.Query, packet: bytes, rcode: int) -> ForwardedReply:
        return ForwardedReply(wire.error_reply(query, packet, rcode), rcode, SOURCE_FORWARD)

    async def forward(self, query: wire.Query, packet: bytes, tcp: bool,
                      view: View) -> ForwardedReply:
        if (special := self._special(query)) is not None:  # special-use names, CHAOS
            return special
        max_size = wire.MAX_TCP_SIZE if tcp else query.max_udp_size
        key = cache_key(query)
        now = self.clock()
        entry = self.cache.get(key, now)
        if entry is not None:
            if entry.fresh(now):
                self.stats.cache_hits += 1
                return self._from_entry(entry, query, max_size, now, SOURCE_CACHE)
            if now < entry.stale_until:
                return self._stale(entry, query, max_size, now)
        self.stats.cache_misses += 1

        if (self.bogus_priv and is_private_reverse(query.labels)
                and not self.source.table.routed(query.labels)):
            # Nobody upstream can know this private address; asking would only leak it.
            self.stats.private_reverse += 1
            return ForwardedReply(wire.error_reply(query, packet, wire.NXDOMAIN), wire.NXDOMAIN,
                                  SOURCE_LOCAL, memo_until=math.inf)
        servers = self.source.table.for_labels(query.labels)
        if not servers:
            limited.warning("no upstream server for %s; answering SERVFAIL", query.presentation)
            return self._failed(entry, query, packet, max_size, wire.SERVFAIL)
        flight = (key, tcp)
        task = self._inflight.get(flight)
        if task is None:
            if len(self._inflight) >= self.max_inflight:
                self.stats.overflow += 1
                limited.warning("%d questions are in flight upstream (--max-inflight); new ones "
                                "get SERVFAIL at once", self.max_inflight)
                return self._failed(entry, query, packet, max_size, wire.SERVFAIL)
            task = asyncio.get_running_loop().create_task(
                self._resolve(key, query, list(servers), tcp), name="resolve")
            self._inflight[flight] = task
            task.add_done_callback(lambda done: self._landed(flight, done))
        else:
            self.stats.coalesced += 1

        try:
            if entry is not None and self.cache.serve_stale:
                outcome = await asyncio.wait_for(asyncio.shield(task), STALE_ANSWER_AFTER)
            else:
                outcome = await asyncio.shield(task)
        except TimeoutError:
            assert entry is not None
            return self._stale(entry, query, max_size, self.clock())
        if outcome.reply is None:
            return self._failed(self.cache.get(key, self.clock()), query, packet, max_size,
                                outcome.rcode)
        if outcome.entry is not None:
            return self._from_entry(outcome.entry, query, max_size, self.clock(),
                                    SOURCE_FORWARD)
        # Not cacheable (TTL 0, a negative answer without SOA): this client only.
        return ForwardedReply(render(outcome.reply, query, outcome.reply.ttls, 0, max_size),
                              outcome.reply.rcode, SOURCE_FORWARD)

    def _special(self, query: wire.Query) -> ForwardedReply | None:
        reply = special_reply(query, self.special)
        if reply is None:
            return None
        # Fixed until a reload, which makes new memos (resolver/daemon/lifecycle.py apply).
        return ForwardedReply(reply, reply[3] & 0xF, SOURCE_LOCAL, memo_until=math.inf)

    def _failed(self, entry: Entry | None, query: wire.Query, packet: bytes, max_size: int,
                rcode: int) -> ForwardedReply:
        now = self.clock()
        if entry is not None and self.cache.serve_stale and not entry.fresh(now):
            return self._stale(entry, query, max_size, now)
        return self._error(query, packet, rcode)

    def _landed(self, flight: tuple[bytes, bool], task: asyncio.Task[Outcome]) -> None:
        if self._inflight.get(flight) is task:
            del self._inflight[flight]
        if not task.cancelled() and task.exception() is not None:
            log.error("resolution failed", exc_info=task.exception())

    async def _resolve(self, key: bytes, query: wire.Query, servers: list[HostPort],
                       tcp: bool) -> Outcome:
        self.stats.resolutions += 1
        start = self.clock()
        resolution = _Resolution(self, upstream_query(query, 0), query.question,
                                 start + ANSWER_BUDGET)
        reply = await resolution.run(self.health.order(servers), tcp)
        now = self.clock()
        if reply is None:
            self.stats.failures += 1
            stale = self.cache.get(key, now)
            if stale is not None and not stale.fresh(now):
                self.cache.failed(stale, now)
            log.debug("no usable answer for %s from %s", query.presentation,
                      ", ".join(str(s) for s in servers))
            return Outcome(None, resolution.failure_rcode)
        return Outcome(reply, reply.rcode, self.cache.put(key, reply, now))
