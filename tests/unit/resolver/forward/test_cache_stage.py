"""The cache stage in front of a stand-in for the rest of the chain: fresh hits answered with
their TTLs ticked down (and renewable in the memo), misses handed on, expired entries served
stale (TTL 30) when the refresh fails or is slow, and new TTL bounds starting a new cache."""

from __future__ import annotations

import asyncio

import dns.message
import pytest

from resolver.answer.chain import Answer, ForwardedReply, Pending, Request, settled
from resolver.answer.views import View
from resolver.dns import wire
from resolver.dns.upstream_message import cache_key, scan
from resolver.forward import cache_stage
from resolver.forward.cache import STALE_TTL
from resolver.forward.cache_stage import CacheStage
from resolver.forward.counters import ForwarderStats
from resolver.forward.settings import ForwardSettings
from tests.support.replies import a_records, client_query, upstream_reply

NAME = "www.cache.test"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rest:
    """The rest of the chain: fails or answers, at once or (``wait``) when ``release()`` is
    called, as an upstream's reply would come in; and counts its calls."""

    def __init__(self, fail: bool = True) -> None:
        self.fail = fail
        self.calls = 0
        self.wait = False
        self.waiting: list[tuple[Request, Pending[ForwardedReply]]] = []

    def __call__(self, request: Request) -> Answer:
        self.calls += 1
        if self.wait:
            pending: Pending[ForwardedReply] = Pending()
            self.waiting.append((request, pending))
            return pending
        return self.reply(request)

    def reply(self, request: Request) -> ForwardedReply:
        if self.fail:
            return ForwardedReply(wire.error_reply(request.query, request.packet,
                                                   wire.SERVFAIL), wire.SERVFAIL, "forward",
                                  failed=True)
        return ForwardedReply(b"fresh from upstream", 0, "forward")

    def release(self) -> None:
        for request, pending in self.waiting:
            pending.resolve(self.reply(request))
        self.waiting.clear()


def serve(stage: CacheStage, rest: Rest) -> ForwardedReply:
    """One question through the stage, on a running loop (stale timers and prefetches need one)."""

    async def main() -> ForwardedReply:
        return await settled(stage.serve(request(), rest))

    return asyncio.run(main())


def request() -> Request:
    query = client_query(NAME)
    packet = dns.message.make_query(NAME, "A").to_wire()
    return Request(query, packet, False, View(networks=(), forward=True), 512,
                   cache_key(query))


def setup(ttl: int = 60, **settings: object) -> tuple[CacheStage, Clock, ForwarderStats]:
    clock, stats = Clock(), ForwarderStats()
    stage = CacheStage(ForwardSettings(**settings), stats, clock)  # type: ignore[arg-type]
    query = client_query(NAME)
    stage.cache.put(cache_key(query), scan(upstream_reply(query, a_records(NAME + ".", 1, ttl))),
                    clock.now)
    return stage, clock, stats


def ttl_of(reply: bytes) -> int:
    return int(dns.message.from_wire(reply).answer[0].ttl)


def test_a_fresh_hit_ticks_its_ttl_and_renews() -> None:
    stage, clock, stats = setup(ttl=60)
    clock.now += 10.5
    rest = Rest()
    reply = serve(stage, rest)
    assert rest.calls == 0 and stats.cache_hits == 1 and reply.source == "cache"
    assert ttl_of(reply.reply) == 50
    assert reply.memo_until == 1011.0 and reply.renew is not None
    renewed = reply.renew(1020.2)
    assert renewed is not None and renewed[0] == 1021.0
    assert ttl_of(b"\0\0" + renewed[1]) == 40
    assert reply.renew(1061.0) is None  # expired: the memo must not give it any more


def test_a_miss_is_handed_on() -> None:
    stage = CacheStage(ForwardSettings(), ForwarderStats(), Clock())
    rest = Rest(fail=False)
    reply = serve(stage, rest)
    assert reply.reply == b"fresh from upstream" and rest.calls == 1
    assert stage.stats.cache_misses == 1 and stage.stats.cache_hits == 0


def test_expired_and_the_refresh_fails_serves_stale() -> None:
    stage, clock, stats = setup(ttl=60)
    clock.now += 120
    rest = Rest(fail=True)
    reply = serve(stage, rest)
    assert rest.calls == 1 and stats.stale_answers == 1 and reply.source == "cache"
    assert ttl_of(reply.reply) == STALE_TTL and not reply.failed


def test_expired_without_serve_stale_passes_the_failure_on() -> None:
    stage, clock, stats = setup(ttl=60, serve_stale=False)
    clock.now += 120
    reply = serve(stage, Rest(fail=True))
    assert reply.failed and reply.rcode == wire.SERVFAIL and stats.stale_answers == 0


def test_a_slow_refresh_serves_stale_meanwhile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_stage, "STALE_ANSWER_AFTER", 0.05)
    stage, clock, stats = setup(ttl=60)
    clock.now += 120
    rest = Rest(fail=False)
    rest.wait = True  # never released before the stale answer is given

    async def main() -> ForwardedReply:
        reply = await settled(stage.serve(request(), rest))
        rest.release()  # the refresh goes on and finishes for the next client
        return reply

    reply = asyncio.run(main())
    assert ttl_of(reply.reply) == STALE_TTL and stats.stale_answers == 1 and rest.calls == 1


def test_a_quick_refresh_of_an_expired_entry_is_the_answer() -> None:
    stage, clock, stats = setup(ttl=60)
    clock.now += 120
    rest = Rest(fail=False)
    rest.wait = True

    async def main() -> ForwardedReply:
        answer = stage.serve(request(), rest)
        assert isinstance(answer, Pending) and not answer.done()
        asyncio.get_running_loop().call_soon(rest.release)  # well before the stale timer
        return await settled(answer)

    reply = asyncio.run(main())
    assert reply.reply == b"fresh from upstream" and stats.stale_answers == 0


def test_a_hit_near_expiry_prefetches_once_and_a_failed_prefetch_may_try_again() -> None:
    stage, clock, stats = setup(ttl=60)
    clock.now += 58  # within the last tenth of the TTL
    rest = Rest(fail=True)
    rest.wait = True

    async def main() -> tuple[int, int]:
        for _ in range(3):  # three hits; one refresh under way for all of them
            reply = await settled(stage.serve(request(), rest))
            assert reply.source == "cache"
        await asyncio.sleep(0)  # the refresh starts on the next turn of the loop
        started = rest.calls
        rest.release()  # it fails: the next hit may ask again
        await settled(stage.serve(request(), rest))
        await asyncio.sleep(0)
        return started, rest.calls

    assert asyncio.run(main()) == (1, 2)
    assert stats.prefetches == 2 and stats.cache_hits == 4


def test_reconfigure_keeps_or_replaces_the_cache() -> None:
    stage, _, _ = setup()
    kept = stage.cache
    stage.reconfigure(ForwardSettings(serve_stale=False))
    assert stage.cache is kept and not kept.serve_stale and len(kept) == 1
    stage.reconfigure(ForwardSettings(cache_max_ttl=30))
    assert stage.cache is not kept and len(stage.cache) == 0 and stage.cache.max_ttl == 30
