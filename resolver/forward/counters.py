"""What the forward chain counts, read by the metrics (dockdns_cache_*, dockdns_forward_*)."""

from __future__ import annotations

from dataclasses import dataclass


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
    fast_failures: int = 0  # questions failed at once: every upstream of theirs was down
    jostled: int = 0  # questions in flight ended to make room for another group's
    prefetches: int = 0  # background refreshes of answers near expiry or served stale
