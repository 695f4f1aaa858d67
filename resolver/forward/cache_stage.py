"""The cache stage: a fresh cached answer is given at once; an expired one is served stale
(RFC 8767) while the upstreams fail, and while a refresh takes longer than the client should
wait. Everything else is handed on, and the stage owns the cache the forward stage fills."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

from resolver.answer.chain import Answer, ForwardedReply, Next, Pending, Request, mapped
from resolver.dns import wire
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



def make_cache(settings: ForwardSettings) -> Cache:
    return Cache(settings.cache_size, settings.cache_min_ttl, settings.cache_max_ttl,
                 settings.serve_stale)


def from_entry(cache: Cache, entry: Entry, request: Request, now: float,
               source: str, refresh: Prefetch | None = None) -> ForwardedReply:
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
    return ForwardedReply(reply, entry.reply.rcode, source, entry.memo_until(now),
                          Rerender(entry, query, max_size, refresh))


class Rerender:
    """A memo entry's ``Renewal`` for a cached answer: the entry rendered again for one client
    with its TTLs ticked, while it is fresh, prefetching it when it is due.

    An object with slots rather than a closure: one is kept per cached answer in the memo, and
    a closure with its cells, like the ``Prefetch`` it calls, was some twenty objects more for
    the cyclic collector to walk (profiled: a tenth of a forwarded miss's CPU went to it)."""

    __slots__ = ("entry", "query", "max_size", "refresh")

    def __init__(self, entry: Entry, query: wire.Query, max_size: int,
                 refresh: Prefetch | None) -> None:
        self.entry = entry
        self.query = query
        self.max_size = max_size
        self.refresh = refresh

    def __call__(self, later: float) -> tuple[float, bytes] | None:
        entry = self.entry
        if not entry.fresh(later):
            return None
        if self.refresh is not None and entry.due_for_prefetch(later):
            self.refresh()
        return entry.memo_until(later), render(entry.reply, self.query, entry.ttls,
                                               entry.age(later), self.max_size)[2:]


class Prefetch:
    """Refreshes one cached entry in the background through ``handler`` (the forward stage),
    once at a time; a refresh that failed may be tried again on a later hit."""

    __slots__ = ("entry", "request", "handler", "stats")

    def __init__(self, entry: Entry, request: Request, handler: Next,
                 stats: ForwarderStats) -> None:
        self.entry = entry
        self.request = request
        self.handler = handler
        self.stats = stats

    def __call__(self) -> None:
        entry = self.entry
        if entry.refreshing or self.request.trace is not None:
            return  # under way already; ``dockdns check`` only explains
        entry.refreshing = True
        self.stats.prefetches += 1
        # Started on the next turn of the loop, as a background task would be: a refresh is
        # asked for while a reply is being rendered (here or in the memo's renewal).
        asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        try:
            answer = self.handler(self.request)
        except Exception:
            self.entry.refreshing = False
            raise
        if isinstance(answer, Pending):
            answer.then(self._done)
        elif answer.failed:
            self.entry.refreshing = False

    def _done(self, settled: Pending[ForwardedReply]) -> None:
        try:
            failed = settled.result().failed
        except BaseException:  # noqa: BLE001 - cancelled at shutdown, or logged where it arose
            failed = True
        if failed:
            self.entry.refreshing = False


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

    def prefetcher(self, entry: Entry, request: Request, handler: Next) -> Prefetch:
        """A call that refreshes ``entry`` in the background through ``handler``."""
        return Prefetch(entry, request, handler, self.stats)

    def _stale(self, entry: Entry, request: Request, now: float) -> ForwardedReply:
        self.stats.stale_answers += 1
        reply = render(entry.reply, request.query, entry.ttls, 0, request.max_size,
                       fixed_ttl=STALE_TTL)
        # Within the failure recheck window the stale bytes may be reused as they are, for a
        # second at a time (then a hit comes here again and refreshes).
        memo_until = min(entry.stale_until, now + STALE_MEMO) if entry.stale_until > now \
            else None
        return ForwardedReply(reply, entry.reply.rcode, SOURCE_CACHE, memo_until)

    def serve(self, request: Request, next: Next) -> Answer:
        cache = self.cache
        now = self.clock()
        entry = cache.get(request.key, now)
        if entry is not None:
            if entry.fresh(now):
                self.stats.cache_hits += 1
                if request.trace is not None:
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
        answer = next(request)
        if entry is not None and cache.serve_stale and isinstance(answer, Pending):
            # The refresh goes on for the next client if this one gets the stale answer first.
            return self._stale_unless_quick(entry, request, answer)
        return mapped(answer, partial(self._unless_failed, request))

    def _unless_failed(self, request: Request, reply: ForwardedReply) -> ForwardedReply:
        """The rest of the chain's reply, or a stale one in its place when it failed."""
        if reply.failed:
            now = self.clock()
            stale = self.cache.get(request.key, now)
            if stale is not None and self.cache.serve_stale and not stale.fresh(now):
                request.note(self.name, "no upstream answered: served stale (RFC 8767)")
                return self._stale(stale, request, now)
        return reply

    def _stale_unless_quick(self, entry: Entry, request: Request,
                            refresh: Pending[ForwardedReply]) -> Pending[ForwardedReply]:
        """The refresh's reply if it comes within STALE_ANSWER_AFTER, else the stale one then."""
        out: Pending[ForwardedReply] = Pending()
        # Bound methods with their arguments, not closures (see chain._Then).
        timer = asyncio.get_running_loop().call_later(STALE_ANSWER_AFTER, self._stale_now, out,
                                                      entry, request)
        refresh.then(partial(self._refreshed, out, timer, request))
        return out

    def _stale_now(self, out: Pending[ForwardedReply], entry: Entry, request: Request) -> None:
        """The refresh took STALE_ANSWER_AFTER: the stale answer now."""
        if not out.done():
            request.note(self.name, "the refresh is slow: served stale meanwhile")
            out.resolve(self._stale(entry, request, self.clock()))

    def _refreshed(self, out: Pending[ForwardedReply], timer: asyncio.TimerHandle,
                   request: Request, settled: Pending[ForwardedReply]) -> None:
        timer.cancel()
        if out.done():
            return
        try:
            out.resolve(self._unless_failed(request, settled.result()))
        except BaseException as err:  # noqa: BLE001 - cancelled at shutdown: passed on
            out.fail(err)
