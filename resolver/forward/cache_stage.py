"""The cache stage: a fresh cached answer is given at once; an expired one is served stale
(RFC 8767) while the upstreams fail, and while a refresh takes longer than the client should
wait. Everything else is handed on, and the stage owns the cache the forward stage fills."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from resolver.answer.chain import ForwardedReply, Next, Request
from resolver.dns.upstream_message import render
from resolver.forward.cache import STALE_TTL, Cache, Entry
from resolver.forward.counters import ForwarderStats
from resolver.forward.settings import ForwardSettings
from resolver.ops.stats import SOURCE_CACHE

# RFC 8767 5 "client response timer": with a stale entry at hand, a client waits at most this long
# for the refresh before getting the stale answer (the refresh goes on for the next client).
STALE_ANSWER_AFTER = 1.8
# How long the memo may give the same stale bytes: each second the next stale hit comes here
# again and starts a refresh, so stale answers end soon after an upstream is back.
STALE_MEMO = 1.0

Refresh = Callable[[], None]


def make_cache(settings: ForwardSettings) -> Cache:
    return Cache(settings.cache_size, settings.cache_min_ttl, settings.cache_max_ttl,
                 settings.serve_stale)


def from_entry(cache: Cache, entry: Entry, request: Request, now: float,
               source: str, refresh: Refresh | None = None) -> ForwardedReply:
    """The cached ``entry`` rendered for this client, memoizable until its TTLs tick.
    ``refresh`` is called when the entry is asked for in the last tenth of its TTL, here or
    when the memo renews these bytes (its hits never come to the cache stage)."""
    query, max_size = request.query, request.max_size
    if refresh is not None and entry.due_for_prefetch(now):
        refresh()
    reply = render(entry.reply, query, entry.ttls, entry.age(now), max_size)
    if cache.size <= 0:  # without a cache, these bytes are given only this once
        return ForwardedReply(reply, entry.reply.rcode, source)
    # The same bytes are right until the TTLs tick down; then the memo renders them again
    # from this entry, for as long as it is fresh.

    def renew(later: float) -> tuple[float, bytes] | None:
        if not entry.fresh(later):
            return None
        if refresh is not None and entry.due_for_prefetch(later):
            refresh()
        return entry.memo_until(later), render(entry.reply, query, entry.ttls,
                                               entry.age(later), max_size)[2:]

    return ForwardedReply(reply, entry.reply.rcode, source, entry.memo_until(now), renew)


class CacheStage:
    name = "cache"

    def __init__(self, settings: ForwardSettings, stats: ForwarderStats,
                 clock: Callable[[], float]) -> None:
        self.cache = make_cache(settings)
        self.stats = stats
        self.clock = clock

    def reconfigure(self, settings: ForwardSettings) -> None:
        cache = self.cache
        if (cache.size, cache.min_ttl, cache.max_ttl) != (
                settings.cache_size, settings.cache_min_ttl, settings.cache_max_ttl):
            # Entries were stored with the old TTL bounds: start afresh rather than mix them.
            self.cache = make_cache(settings)
        self.cache.serve_stale = settings.serve_stale

    def prefetcher(self, entry: Entry, request: Request, handler: Next) -> Refresh:
        """A call that refreshes ``entry`` in the background through ``handler`` (the forward
        stage), once at a time; a refresh that failed may be tried again on a later hit."""

        def refresh() -> None:
            if entry.refreshing or request.trace is not None:
                return  # under way already; ``dockdns check`` only explains
            entry.refreshing = True
            self.stats.prefetches += 1
            task = asyncio.ensure_future(handler(request))

            def done(task: asyncio.Future[ForwardedReply]) -> None:
                if task.cancelled() or task.exception() is not None or task.result().failed:
                    entry.refreshing = False

            task.add_done_callback(done)

        return refresh

    def _stale(self, entry: Entry, request: Request, now: float) -> ForwardedReply:
        self.stats.stale_answers += 1
        reply = render(entry.reply, request.query, entry.ttls, 0, request.max_size,
                       fixed_ttl=STALE_TTL)
        # Within the failure recheck window the stale bytes may be reused as they are, for a
        # second at a time (then a hit comes here again and refreshes).
        memo_until = min(entry.stale_until, now + STALE_MEMO) if entry.stale_until > now \
            else None
        return ForwardedReply(reply, entry.reply.rcode, SOURCE_CACHE, memo_until)

    async def serve(self, request: Request, next: Next) -> ForwardedReply:
        cache = self.cache
        now = self.clock()
        entry = cache.get(request.key, now)
        if entry is not None:
            if entry.fresh(now):
                self.stats.cache_hits += 1
                request.note(self.name, f"hit: cached {entry.age(now)} s ago")
                return from_entry(cache, entry, request, now, SOURCE_CACHE,
                                  self.prefetcher(entry, request, next))
            if now < entry.stale_until:
                request.note(self.name, "expired and the upstreams failed just now: served "
                                        f"stale (TTL {STALE_TTL}), refreshing in the background")
                self.prefetcher(entry, request, next)()
                return self._stale(entry, request, now)
        self.stats.cache_misses += 1
        request.note(self.name, "miss" if entry is None else "expired: refreshing")
        if entry is not None and cache.serve_stale:
            # The refresh goes on for the next client if this one gets the stale answer first.
            refresh = asyncio.ensure_future(next(request))
            refresh.add_done_callback(_consume)
            try:
                reply = await asyncio.wait_for(asyncio.shield(refresh), STALE_ANSWER_AFTER)
            except TimeoutError:
                request.note(self.name, "the refresh is slow: served stale meanwhile")
                return self._stale(entry, request, self.clock())
        else:
            reply = await next(request)
        if reply.failed:
            now = self.clock()
            stale = cache.get(request.key, now)
            if stale is not None and cache.serve_stale and not stale.fresh(now):
                request.note(self.name, "no upstream answered: served stale (RFC 8767)")
                return self._stale(stale, request, now)
        return reply


def _consume(task: asyncio.Future[ForwardedReply]) -> None:
    """A refresh no client waits for any more: its error, if any, was logged where it arose."""
    if not task.cancelled():
        task.exception()
