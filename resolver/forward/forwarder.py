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

from resolver.answer.chain import (
    Answer,
    ForwardedReply,
    Next,
    Pending,
    Request,
    Stage,
    Trace,
    chain,
)
from resolver.answer.views import View
from resolver.dns import wire
from resolver.dns.addresses import HostPort
from resolver.dns.upstream_message import UpstreamReply, cache_key, render, upstream_query
from resolver.forward.cache import Cache
from resolver.forward.cache_stage import CacheStage, from_entry
from resolver.forward.counters import ForwarderStats
from resolver.forward.health import UpstreamHealth
from resolver.forward.loop import LoopDetector
from resolver.forward.pool import UpstreamPool
from resolver.forward.private_reverse import PrivateReverseStage
from resolver.forward.resolution import Outcome, Resolution
from resolver.forward.settings import ForwardSettings
from resolver.forward.special_names import SpecialNamesStage
from resolver.forward.timers import Deadlines
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
# One destination group (the upstreams a name routes to: a --forward-zone's, or the default ones)
# holds at most this share of --max-inflight, so a zone whose upstreams are silent cannot take
# every slot from the others.
GROUP_SHARE = 0.5
# When every slot is taken, a new question jostles out the oldest question of the group holding
# the most, if that one has waited at least this long (Unbound's jostle-timeout, 200 ms): a
# question that is still young is likely to be answered in a moment.
JOSTLE_AFTER = 0.2


Flight = tuple[bytes, bool]  # a question in flight: its cache key, and whether over TCP
Group = tuple[HostPort, ...]  # a destination group: the upstreams one name routes to


class ForwardStage:
    """The last stage: ask the upstreams, once per distinct question in flight.

    A question in flight is a ``Resolution`` (no task of its own) and a future per client
    waiting on it; the first client's query starts it, identical ones join it, and when it ends
    ``_landed`` caches what it got and hands every waiting client the same ``Outcome``."""

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
        self.inflight: dict[Flight, Resolution] = {}
        # Every attempt's and every question's deadline, behind one timer.
        self.deadlines = Deadlines(clock)
        # Set while dockdns is registered with systemd-resolved: marks every upstream question.
        self.guard: LoopGuard | None = None
        # The same questions by destination group, oldest first, with when each started.
        self.groups: dict[Group, dict[Flight, float]] = {}

    @property
    def max_inflight(self) -> int:
        return self._max_inflight

    @max_inflight.setter
    def max_inflight(self, value: int) -> None:
        self._max_inflight = value
        self._group_cap = max(1, int(value * GROUP_SHARE))

    def group_cap(self) -> int:
        return self._group_cap

    def _room(self, group: Group, request: Request) -> bool:
        """Whether a new question for ``group`` may start: its group is under its share, and a
        slot is free or one was made by jostling the oldest question of the fullest group."""
        if len(self.groups.get(group, ())) >= self._group_cap:
            limited.warning("%d questions for upstreams %s are in flight (their share of "
                            "--max-inflight); new ones get SERVFAIL at once", self.group_cap(),
                            ", ".join(map(str, group)))
            request.note(self.name, "the share of --max-inflight of these upstreams is taken: "
                                    "SERVFAIL")
            return False
        if len(self.inflight) < self._max_inflight:
            return True
        fullest = max(self.groups.values(), key=len, default={})
        oldest = next(iter(fullest.items()), None)
        if oldest is not None and self.clock() - oldest[1] >= JOSTLE_AFTER:
            resolution = self.inflight.get(oldest[0])
            if resolution is not None:
                self.stats.jostled += 1
                resolution.cancel(jostled=True)  # lands at once: its clients get SERVFAIL
                request.note(self.name, "--max-inflight questions are waiting: the oldest was "
                                        "jostled out to make room")
                return True
        limited.warning("%d questions are in flight upstream (--max-inflight); new ones "
                        "get SERVFAIL at once", self.max_inflight)
        request.note(self.name, "--max-inflight questions are waiting already: SERVFAIL")
        return False

    def _forget(self, resolution: Resolution) -> None:
        flight = resolution.flight
        if self.inflight.get(flight) is not resolution:
            return
        del self.inflight[flight]
        flights = self.groups.get(resolution.group)
        if flights is not None and flights.pop(flight, None) is not None and not flights:
            del self.groups[resolution.group]

    @staticmethod
    def _failure(request: Request, rcode: int) -> ForwardedReply:
        return ForwardedReply(wire.error_reply(request.query, request.packet, rcode), rcode,
                              SOURCE_FORWARD, failed=True)

    def serve(self, request: Request, next: Next) -> Answer:
        query = request.query
        servers = self.upstreams.table.for_labels(query.labels)
        if not servers:
            limited.warning("no upstream server for %s; answering SERVFAIL", query.presentation)
            request.note(self.name, "no upstream server is configured for this name: SERVFAIL")
            return self._failure(request, wire.SERVFAIL)
        flight = (request.key, request.tcp)
        resolution = self.inflight.get(flight)
        waiter: Pending[ForwardedReply] = Pending()
        if resolution is None:
            order = self.pool.health.order(servers)
            if not order:
                # Every upstream of this name is down: no waiting for them, the probes find out
                # when one is back (and one due now starts at once).
                self.stats.fast_failures += 1
                self.pool.probe_down()
                request.note(self.name, "every upstream of this name is down (" + ", ".join(
                    map(str, servers)) + "): failed at once")
                return self._failure(request, wire.SERVFAIL)
            if not self._room(servers, request):
                self.stats.overflow += 1
                return self._failure(request, wire.SERVFAIL)
            if request.trace is not None:
                request.note(self.name, "asked " + ", ".join(map(str, order)) + (
                    " over TCP" if request.tcp else ""))
            resolution = self._start(flight, servers, query)
            resolution.waiters.append((request, waiter))
            resolution.start(order, request.tcp)
        else:
            self.stats.coalesced += 1
            request.note(self.name, "joined the same question already in flight")
            resolution.waiters.append((request, waiter))
        # Settled by ``_landed`` when the resolution ends (possibly already, if every attempt
        # failed at once).
        return waiter

    def _reply_for(self, request: Request, outcome: Outcome) -> ForwardedReply:
        """What one waiting client gets of a resolution's outcome."""
        if outcome.jostled:
            request.note(self.name, "jostled out by a question for other upstreams: SERVFAIL")
            return self._failure(request, wire.SERVFAIL)
        if outcome.reply is None:
            request.note(self.name, "no usable answer from any upstream")
            return self._failure(request, outcome.rcode)
        if outcome.entry is not None:
            request.note(self.name, "answered; cached")
            # Its prefetch, when the memo renews it late in its TTL, comes back to this stage.
            refresh = self.cache_stage.prefetcher(outcome.entry, request, self._again)
            return from_entry(self.cache_stage.cache, outcome.entry, request, self.clock(),
                              SOURCE_FORWARD, refresh)
        request.note(self.name, "answered; not cacheable")
        # Not cacheable (TTL 0, a negative answer without SOA): this client only.
        return ForwardedReply(render(outcome.reply, request.query, outcome.reply.ttls, 0,
                                     request.max_size), outcome.reply.rcode, SOURCE_FORWARD)

    def _again(self, request: Request) -> Answer:
        return self.serve(request, _no_answer)

    def _start(self, flight: Flight, group: Group, query: wire.Query) -> Resolution:
        """A resolution for ``query``, registered in flight (its caller starts it)."""
        self.stats.resolutions += 1
        start = self.clock()
        message, marked = upstream_query(query, 0), b""
        if self.guard is not None:  # resolver/resolved/guard.py: our own query, if it comes back
            message, marked = self.guard.mark(message, query.question)
        resolution = Resolution(self.pool, self.stats, self.clock, message, query.question,
                                start, ANSWER_BUDGET, self.deadlines, self._landed)
        resolution.flight = flight
        resolution.group = group
        resolution.marked = marked
        resolution.query = query
        self.inflight[flight] = resolution
        self.groups.setdefault(group, {})[flight] = start
        return resolution

    def _landed(self, resolution: Resolution, reply: UpstreamReply | None) -> None:
        """A resolution ended: cache what it got, and give every waiting client the outcome."""
        self._forget(resolution)
        if self.guard is not None and resolution.marked:
            self.guard.release(resolution.marked)
        waiters = resolution.waiters
        resolution.waiters = []
        if resolution.cancelled:  # shutdown: each client answers SERVFAIL itself
            for _, waiter in waiters:
                waiter.fail(asyncio.CancelledError())
            return
        if resolution.jostled:
            outcome = Outcome(None, wire.SERVFAIL, jostled=True)
        else:
            outcome = self._outcome(resolution, reply)
        for request, waiter in waiters:
            try:
                waiter.resolve(self._reply_for(request, outcome))
            except Exception as err:  # one client's rendering must not cost the others theirs
                waiter.fail(err)

    def _outcome(self, resolution: Resolution, reply: UpstreamReply | None) -> Outcome:
        now = self.clock()
        cache = self.cache_stage.cache
        key = resolution.flight[0]
        if reply is None:
            self.stats.failures += 1
            stale = cache.get(key, now)
            if stale is not None and not stale.fresh(now):
                cache.failed(stale, now)
            if log.isEnabledFor(logging.DEBUG) and resolution.query is not None:
                log.debug("no usable answer for %s from %s", resolution.query.presentation,
                          ", ".join(str(s) for s in resolution.servers))
            return Outcome(None, resolution.failure_rcode)
        return Outcome(reply, reply.rcode, cache.put(key, reply, now))


def _no_answer(request: Request) -> ForwardedReply:
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
        self.pool = UpstreamPool(settings.upstream_timeout, clock, settings.upstream_ca)
        self.cache_stage = CacheStage(settings, self.stats, clock)
        self.special_names = SpecialNamesStage(settings)
        self.private_reverse = PrivateReverseStage(settings.bogus_priv, self.source, self.stats)
        self.forward_stage = ForwardStage(settings, self.source, self.pool, self.cache_stage,
                                          self.stats, clock)
        self.loops = LoopDetector(self.pool, lambda: self.source.table.servers(), clock)
        self._loop_check = True  # at start, and again whenever the upstreams change
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

    @property
    def events(self) -> dict[str, int]:
        stats = self.stats
        return {"fast_failure": stats.fast_failures, "jostled": stats.jostled,
                "overflow": stats.overflow, "prefetch": stats.prefetches}

    @property
    def down(self) -> int:
        return len(self.health.skipped())

    # --- lifecycle --------------------------------------------------------------------------

    def reconfigure(self, settings: ForwardSettings) -> None:
        """Apply a re-read config (SIGHUP): upstreams, zones, timeouts and cache bounds change for
        the next question; questions in flight finish with the servers they started with."""
        self.settings = settings
        self.source.reconfigure(settings)
        self.pool.forget_except(self.source.table.servers())
        self.pool.timeout = settings.upstream_timeout
        self.pool.reconfigure_tls(settings.upstream_ca)
        self.forward_stage.max_inflight = settings.max_inflight
        self.private_reverse.enabled = settings.bogus_priv
        self.special_names.reconfigure(settings)
        self.cache_stage.reconfigure(settings)
        self._loop_check = True

    def start(self) -> None:
        # Quiet: the upstreams are logged once the daemon is up (a failed start says one line).
        self.source.load(quiet=True)

    async def run(self) -> None:
        """Background upkeep: follow resolv.conf, probe the upstreams that are down."""
        while True:
            if self._loop_check:
                self._loop_check = False
                self.loops.check(self.source.table.servers())
            await asyncio.sleep(MAINTENANCE_INTERVAL)
            if self.source.poll():
                self.pool.forget_except(self.source.table.servers())
                self._loop_check = True
            self.pool.probe_down()

    async def close(self) -> None:
        for resolution in list(self.forward_stage.inflight.values()):
            resolution.cancel()
        self.forward_stage.deadlines.close()
        await self.loops.close()
        await self.pool.close()

    # --- answering --------------------------------------------------------------------------

    def forward(self, query: wire.Query, packet: bytes, tcp: bool, view: View,
                trace: Trace | None = None) -> Answer:
        """The chain's answer to ``query``: now, or ``Pending`` until the upstreams reply."""
        if self.loops.seen(query):
            if trace is not None:
                trace.note("forward", "a forwarding-loop probe: SERVFAIL, never forwarded")
            return ForwardedReply(wire.error_reply(query, packet, wire.SERVFAIL), wire.SERVFAIL,
                                  SOURCE_FORWARD, failed=True)
        max_size = wire.MAX_TCP_SIZE if tcp else query.max_udp_size
        request = Request(query, packet, tcp, view, max_size, cache_key(query), trace)
        return self._chain(request)
