"""The cache's pure logic (resolver/forward/cache.py): lifetimes (RFC 2308), clamping, eviction and
staleness."""

from __future__ import annotations

import dns.flags
import dns.rcode
import dns.rrset

from resolver.dns.upstream_message import UpstreamReply, scan
from resolver.forward.cache import MAX_NEGATIVE_TTL, STALE_RECHECK, STALE_WINDOW, Cache
from tests.support.replies import a_records, client_query, upstream_reply

SOA = "ns.example.test. admin.example.test. 1 2 3 4 {minimum}"


def positive(ttl: int = 300, ns_ttl: int | None = None) -> UpstreamReply:
    query = client_query()
    authority: tuple[dns.rrset.RRset, ...] = ()
    if ns_ttl is not None:
        authority = (dns.rrset.from_text("example.test.", ns_ttl, "IN", "NS",
                                         "ns.example.test."),)
    return scan(upstream_reply(query, a_records("www.example.test.", 2, ttl), authority=authority))


def negative(rcode: dns.rcode.Rcode = dns.rcode.NXDOMAIN, soa_ttl: int = 300,
             minimum: int | None = 60) -> UpstreamReply:
    query = client_query("nope.example.test")
    authority: tuple[dns.rrset.RRset, ...] = ()
    if minimum is not None:
        authority = (dns.rrset.from_text("example.test.", soa_ttl, "IN", "SOA",
                                         SOA.format(minimum=minimum)),)
    return scan(upstream_reply(query, authority=authority, rcode=rcode))


def test_positive_answers_live_as_long_as_their_shortest_ttl() -> None:
    cache = Cache(10)
    assert cache.lifetime(positive(300)) == 300
    assert cache.lifetime(positive(300, ns_ttl=100)) == 100


def test_negative_answers_live_for_the_soa_minimum_and_need_an_soa() -> None:
    cache = Cache(10)
    assert cache.lifetime(negative(minimum=60)) == 60
    assert cache.lifetime(negative(soa_ttl=30, minimum=60)) == 30
    assert cache.lifetime(negative(rcode=dns.rcode.NOERROR, minimum=45)) == 45  # NODATA
    assert cache.lifetime(negative(soa_ttl=10**6, minimum=10**6)) == MAX_NEGATIVE_TTL
    assert cache.lifetime(negative(minimum=None)) is None


def test_errors_and_truncated_replies_are_never_cached() -> None:
    cache = Cache(10, min_ttl=60)
    assert cache.lifetime(negative(rcode=dns.rcode.SERVFAIL, minimum=None)) is None
    assert cache.lifetime(negative(rcode=dns.rcode.REFUSED, minimum=60)) is None
    query = client_query()
    truncated = scan(upstream_reply(query, flags=dns.flags.TC))
    assert cache.lifetime(truncated) is None


def test_min_and_max_ttl_clamp_the_lifetime_and_every_record() -> None:
    cache = Cache(10, min_ttl=60, max_ttl=120)
    assert cache.lifetime(positive(5)) == 60
    assert cache.lifetime(positive(3600)) == 120
    entry = cache.put(b"k", positive(3600, ns_ttl=7200), now=0.0)
    assert entry is not None and entry.ttls == (120, 120, 120)
    assert Cache(10).lifetime(positive(0)) is None
    assert Cache(10, min_ttl=5).lifetime(positive(0)) == 5


def test_ttls_count_down_and_the_memo_ends_at_the_next_tick() -> None:
    cache = Cache(10)
    entry = cache.put(b"k", positive(300), now=100.0)
    assert entry is not None
    assert entry.age(100.9) == 0 and entry.age(102.5) == 2
    assert entry.memo_until(100.4) == 101.0
    assert entry.memo_until(102.5) == 103.0
    short = cache.put(b"s", positive(2), now=100.0)
    assert short is not None and short.memo_until(101.85) == 102.0 == short.expires_at
    # Before its prefetch time (the TTL's last tenth) the memo stops there, so that a hit then
    # comes to the renewal that starts the prefetch.
    assert short.memo_until(101.5) == short.prefetch_at == 101.8
    assert not short.due_for_prefetch(101.7) and short.due_for_prefetch(101.8)


def test_least_recently_used_entries_are_evicted() -> None:
    cache = Cache(2)
    cache.put(b"a", positive(), now=0.0)
    cache.put(b"b", positive(), now=0.0)
    assert cache.get(b"a", now=1.0) is not None
    cache.put(b"c", positive(), now=1.0)
    assert len(cache) == 2 and cache.evictions == 1
    assert cache.get(b"b", now=1.0) is None
    assert cache.get(b"a", now=1.0) is not None and cache.get(b"c", now=1.0) is not None


def test_expired_entries_are_kept_a_day_for_serving_stale() -> None:
    cache = Cache(10)
    cache.put(b"k", positive(10), now=0.0)
    stale = cache.get(b"k", now=11.0)
    assert stale is not None and not stale.fresh(11.0)
    cache.failed(stale, now=11.0)
    assert stale.stale_until == 11.0 + STALE_RECHECK
    assert cache.get(b"k", now=10.0 + STALE_WINDOW - 1) is not None
    assert cache.get(b"k", now=10.0 + STALE_WINDOW) is None
    assert len(cache) == 0


def test_without_serve_stale_expired_entries_are_gone() -> None:
    cache = Cache(10, serve_stale=False)
    cache.put(b"k", positive(10), now=0.0)
    assert cache.get(b"k", now=9.0) is not None
    assert cache.get(b"k", now=10.0) is None


def test_a_zero_size_cache_stores_nothing_but_still_makes_entries() -> None:
    cache = Cache(0)
    assert cache.put(b"k", positive(), now=0.0) is not None
    assert cache.get(b"k", now=0.0) is None
