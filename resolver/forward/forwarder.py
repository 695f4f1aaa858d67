"""Forwarding: names outside the registry go down a chain of stages (resolver/answer/chain.py):
private-reverse, cache/stale, then the forward stage here, with the upstream pool beneath.

The forward stage routes the question (the zone's upstreams or the default ones), joins the
identical question already in flight or starts one (bounded by --max-inflight), and resolves it
(resolver/forward/resolution.py) within ``ANSWER_BUDGET``. What it gets is cached and rendered for
the client; when it fails, the cache stage in front answers stale if it can, else SERVFAIL.
``UpstreamForwarder`` builds the chain from the forwarder's config slice and keeps its upkeep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from resolver.answer.chain import ForwardedReply, Next, Request, Stage, Trace, chain
from resolver.answer.views import View
from resolver.dns import wire
from resolver.dns.addresses import HostPort
from resolver.dns.upstream_message import cache_key, render, upstream_query
from resolver.forward.cache import Cache
from resolver.forward.cache_stage import CacheStage, from_entry
from resolver.forward.counters import ForwarderStats
from resolver.forward.health import UpstreamHealth
from resolver.forward.pool import UpstreamPool
from resolver.forward.private_reverse import PrivateReverseStage
from resolver.forward.resolution import Outcome, Resolution
from resolver.forward.settings import ForwardSettings
from resolver.forward.special_names import SpecialNamesStage
from resolver.forward.transport import UpstreamUDP
from resolver.forward.upstreams import UpstreamSource
from resolver.ops.logs import RateLimitedLog
from resolver.ops.stats import SOURCE_CACHE, SOURCE_FORWARD, QueryStats
from resolver.resolved.guard import LoopGuard

log = logging.getLogger("dockdns.forwarder")
limited = RateLimitedLog(log)

# Every client gets an answer (SERVFAIL at worst) this long after its query reached us: glibc and
# musl stubs give up after 5 s, so 3.5 s leaves room for the client's own path and a loaded host.
ANSWER_BUDGET = 3.5
# How often resolv.conf is checked and upstreams that are down are probed.
MAINTENANCE_INTERVAL = 1.0


class ForwardStage:
    """The last stage: ask the upstreams, once per distinct question in flight."""

    name = "forward"

    def __init__(self, settings: ForwardSettings, upstreams: UpstreamSource, pool: UpstreamPool,
                 cache_stage: CacheStage, stats: ForwarderStats,
                 clock: Callable[[], float]) -> None:
        self.upstreams = upstreams
        self.pool = pool
        self.cache_stage = cache_stage  # the cache it fills is the one the cache stage reads
        self.stats = stats
        self.clock = clock
        self.max_inflight = settings.max_inflight
        # At most max_inflight questions (checked before a resolution starts).
        self.inflight: dict[tuple[bytes, bool], asyncio.Task[Outcome]] = {}
        # Set while dockdns is registered with systemd-resolved: marks every upstream question.
        self.guard: LoopGuard | None = None

    @staticmethod
    def _failure(request: Request, rcode: int) -> ForwardedReply:
        return ForwardedReply(wire.error_reply(request.query, request.packet, rcode), rcode,
                              SOURCE_FORWARD, failed=True)

    async def serve(self, request: Request, next: Next) -> ForwardedReply:
        query = request.query
        servers = self.upstreams.table.for_labels(query.labels)
        if not servers:
            limited.warning("no upstream server for %s; answering SERVFAIL", query.presentation)
            request.note(self.name, "no upstream server is configured for this name: SERVFAIL")
            return self._failure(request, wire.SERVFAIL)
        flight = (request.key, request.tcp)
        task = self.inflight.get(flight)
        if task is None:
            if len(self.inflight) >= self.max_inflight:
                self.stats.overflow += 1
                limited.warning("%d questions are in flight upstream (--max-inflight); new ones "
                                "get SERVFAIL at once", self.max_inflight)
                request.note(self.name, "--max-inflight questions are waiting already: SERVFAIL")
                return self._failure(request, wire.SERVFAIL)
            request.note(self.name, "asked " + ", ".join(
                str(s) for s in self.pool.health.order(servers)) + (" over TCP" if request.tcp
                                                                    else ""))
            task = asyncio.get_running_loop().create_task(
                self._resolve(request.key, query, list(servers), request.tcp), name="resolve")
            self.inflight[flight] = task
            task.add_done_callback(lambda done: self._landed(flight, done))
        else:
            self.stats.coalesced += 1
            request.note(self.name, "joined the same question already in flight")
        outcome = await asyncio.shield(task)
        if outcome.reply is None:
            request.note(self.name, "no usable answer from any upstream")
            return self._failure(request, outcome.rcode)
        if outcome.entry is not None:
            request.note(self.name, "answered; cached")
            return from_entry(self.cache_stage.cache, outcome.entry, request, self.clock(),
                              SOURCE_FORWARD)
        request.note(self.name, "answered; not cacheable")
        # Not cacheable (TTL 0, a negative answer without SOA): this client only.
        return ForwardedReply(render(outcome.reply, query, outcome.reply.ttls, 0,
                                     request.max_size), outcome.reply.rcode, SOURCE_FORWARD)

    def _landed(self, flight: tuple[bytes, bool], task: asyncio.Task[Outcome]) -> None:
        if self.inflight.get(flight) is task:
            del self.inflight[flight]
        if not task.cancelled() and task.exception() is not None:
            log.error("resolution failed", exc_info=task.exception())

    async def _resolve(self, key: bytes, query: wire.Query, servers: list[HostPort],
                       tcp: bool) -> Outcome:
        self.stats.resolutions += 1
        start = self.clock()
        message, marked = upstream_query(query, 0), b""
        if self.guard is not None:  # resolver/resolved/guard.py: our own query, if it comes back
            message, marked = self.guard.mark(message, query.question)
        resolution = Resolution(self.pool, self.stats, self.clock, message, query.question,
                                start + ANSWER_BUDGET)
        try:
            reply = await resolution.run(self.pool.health.order(servers), tcp)
        finally:
            if self.guard is not None and marked:
                self.guard.release(marked)
        now = self.clock()
        cache = self.cache_stage.cache
        if reply is None:
            self.stats.failures += 1
            stale = cache.get(key, now)
            if stale is not None and not stale.fresh(now):
                cache.failed(stale, now)
            log.debug("no usable answer for %s from %s", query.presentation,
                      ", ".join(str(s) for s in servers))
            return Outcome(None, resolution.failure_rcode)
        return Outcome(reply, reply.rcode, cache.put(key, reply, now))


async def _no_answer(request: Request) -> ForwardedReply:
    """Past the last stage (none is: the forward stage always answers), as NextOrFailure."""
    return ForwardedReply(wire.error_reply(request.query, request.packet, wire.SERVFAIL),
                          wire.SERVFAIL, SOURCE_FORWARD, failed=True)


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
    """The forward chain and its upkeep. Implements the handler's ``Forwarder`` protocol, and
    the metrics' ``UpstreamMetrics``."""

    def __init__(self, settings: ForwardSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.settings = settings
        self.stats = ForwarderStats()
        self.source = UpstreamSource(settings)
        self.pool = UpstreamPool(settings.upstream_timeout)
        self.cache_stage = CacheStage(settings, self.stats, clock)
        self.special_names = SpecialNamesStage(settings)
        self.private_reverse = PrivateReverseStage(settings.bogus_priv, self.source, self.stats)
        self.forward_stage = ForwardStage(settings, self.source, self.pool, self.cache_stage,
                                          self.stats, clock)
        self.stages: tuple[Stage, ...] = (self.special_names, self.private_reverse,
                                          self.cache_stage, self.forward_stage)
        self._chain = chain(self.stages, _no_answer)

    # --- what the metrics and the daemon read -----------------------------------------------

    @property
    def cache(self) -> Cache:
        return self.cache_stage.cache

    @property
    def health(self) -> UpstreamHealth:
        return self.pool.health

    @property
    def udp(self) -> UpstreamUDP:
        return self.pool.udp

    @property
    def requests(self) -> dict[tuple[str, str], int]:
        return self.pool.requests

    @property
    def rejected_replies(self) -> dict[str, int]:
        """Upstream replies dropped, by reason (transport.TransportStats.reject, and
        ``unreadable``: matched to a query but not a DNS message we can read)."""
        rejected = dict(self.udp.stats.rejected)
        if self.stats.bad_replies:
            rejected["unreadable"] = self.stats.bad_replies
        return rejected

    @property
    def inflight(self) -> int:
        return len(self.forward_stage.inflight)

    @property
    def guard(self) -> LoopGuard | None:
        return self.forward_stage.guard

    @guard.setter
    def guard(self, guard: LoopGuard | None) -> None:
        self.forward_stage.guard = guard

    # --- lifecycle --------------------------------------------------------------------------

    def reconfigure(self, settings: ForwardSettings) -> None:
        """Apply a re-read config (SIGHUP): upstreams, zones, timeouts and cache bounds change for
        the next question; questions in flight finish with the servers they started with."""
        self.settings = settings
        self.source.reconfigure(settings)
        self.pool.forget_except(self.source.table.servers())
        self.pool.timeout = settings.upstream_timeout
        self.forward_stage.max_inflight = settings.max_inflight
        self.private_reverse.enabled = settings.bogus_priv
        self.special_names.reconfigure(settings)
        self.cache_stage.reconfigure(settings)

    def start(self) -> None:
        # Quiet: the upstreams are logged once the daemon is up (a failed start says one line).
        self.source.load(quiet=True)

    async def run(self) -> None:
        """Background upkeep: follow resolv.conf, probe the upstreams that are down."""
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL)
            if self.source.poll():
                self.pool.forget_except(self.source.table.servers())
            self.pool.probe_down()

    async def close(self) -> None:
        tasks = list(self.forward_stage.inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self.pool.close()

    # --- answering --------------------------------------------------------------------------

    async def forward(self, query: wire.Query, packet: bytes, tcp: bool, view: View,
                      trace: Trace | None = None) -> ForwardedReply:
        max_size = wire.MAX_TCP_SIZE if tcp else query.max_udp_size
        request = Request(query, packet, tcp, view, max_size, cache_key(query), trace)
        return await self._chain(request)
