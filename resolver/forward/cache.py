"""The answer cache: upstream replies kept for their TTL, negative ones too (RFC 2308), and kept a
day longer to be served stale while every upstream fails (RFC 8767).

Pure: every method takes ``now`` (time.monotonic seconds), nothing here does I/O. An entry holds
the scanned upstream reply and the TTL each record counts down from;
``resolver.dns.upstream_message.render``
turns it into a client's reply. Entries are evicted least recently used first.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from resolver.dns import wire
from resolver.dns.upstream_message import UpstreamReply

# RFC 2308 5: negative answers should be cached for 1-3 hours at most, whatever the SOA says.
MAX_NEGATIVE_TTL = 10_800
# RFC 8767 5: how long past expiry an entry may still be served (they suggest 1-3 days), the TTL
# a stale answer carries, and how long after a failed refresh stale answers are given without
# asking upstream again (the "failure recheck timer", 30 s suggested).
# A fresh answer asked for in the last tenth of its TTL is refreshed in the background (Unbound's
# prefetch), so that a name in use does not fall out of the cache and cost a client the wait.
PREFETCH_AFTER = 0.9
STALE_WINDOW = 86_400
STALE_TTL = 30
STALE_RECHECK = 30.0


@dataclass(slots=True)
class Entry:
    reply: UpstreamReply
    ttls: tuple[int, ...]  # what each record's TTL counts down from (after min/max clamping)
    stored_at: float
    expires_at: float
    # While now < stale_until (set after a failed refresh), the stale answer is given at once.
    stale_until: float = -math.inf
    # A background refresh is under way (or has replaced this entry).
    refreshing: bool = False

    # Written out, not generated: the dataclass decorator's ``__init__`` is interpreted Python
    # even in the compiled build (py-spy and perf: one per miss of each such class), and it
    # leaves one defined in the class alone. Keep it in step with the fields.
    def __init__(self, reply: UpstreamReply, ttls: tuple[int, ...], stored_at: float,
                 expires_at: float, stale_until: float = -math.inf,
                 refreshing: bool = False) -> None:
        self.reply = reply
        self.ttls = ttls
        self.stored_at = stored_at
        self.expires_at = expires_at
        self.stale_until = stale_until
        self.refreshing = refreshing

    @property
    def prefetch_at(self) -> float:
        return self.stored_at + PREFETCH_AFTER * (self.expires_at - self.stored_at)

    def due_for_prefetch(self, now: float) -> bool:
        return now >= self.prefetch_at

    def fresh(self, now: float) -> bool:
        return now < self.expires_at

    def age(self, now: float) -> int:
        """Whole seconds since the answer arrived: what every TTL has counted down by."""
        return int(now - self.stored_at)

    def memo_until(self, now: float) -> float:
        """Until when the rendered bytes stay right: the next tick of ``age``, or expiry; and
        not past the prefetch time, so that a hit then reaches the renewal that prefetches."""
        until = min(self.stored_at + self.age(now) + 1, self.expires_at)
        return min(until, self.prefetch_at) if now < self.prefetch_at else until


class Cache:
    def __init__(self, size: int, min_ttl: int = 0, max_ttl: int = 86_400,
                 serve_stale: bool = True) -> None:
        self.size = size
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.serve_stale = serve_stale
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lifetime(self, reply: UpstreamReply) -> int | None:
        """How long ``reply`` may be cached, or None if it must not be.

        Positive answers live as long as their shortest answer/authority TTL; NXDOMAIN and NODATA
        as long as the SOA in their authority section says (RFC 2308 5), and not at all without
        one. SERVFAIL and every other error are never cached, nor are truncated replies.
        """
        counted = reply.ttls[: reply.answer_count + reply.authority_count]
        if reply.truncated:
            return None
        if reply.rcode == wire.NOERROR and reply.answer_count:
            ttl = min(counted)
        elif reply.rcode in (wire.NOERROR, wire.NXDOMAIN):
            if reply.negative_ttl is None:
                return None
            ttl = min(reply.negative_ttl, MAX_NEGATIVE_TTL, *reply.ttls[: reply.answer_count])
        else:
            return None
        ttl = max(self.min_ttl, min(ttl, self.max_ttl))
        return ttl if ttl > 0 else None

    def entry(self, reply: UpstreamReply, now: float) -> Entry | None:
        """An entry for ``reply`` without storing it; None if it may not be cached."""
        ttl = self.lifetime(reply)
        if ttl is None:
            return None
        ttls = tuple(min(max(record, self.min_ttl), ttl) for record in reply.ttls)
        return Entry(reply, ttls, now, now + ttl)

    def put(self, key: bytes, reply: UpstreamReply, now: float) -> Entry | None:
        """Cache ``reply`` under ``key`` if it may be; return its entry (stored or not)."""
        entry = self.entry(reply, now)
        if entry is None or self.size <= 0:
            return entry
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
            self.evictions += 1
        return entry

    def get(self, key: bytes, now: float) -> Entry | None:
        """The entry for ``key`` if it is fresh, or expired but still servable stale."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not entry.fresh(now) and (not self.serve_stale
                                     or now >= entry.expires_at + STALE_WINDOW):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def failed(self, entry: Entry, now: float) -> None:
        """A refresh of a stale entry failed: serve it without asking again for a while."""
        entry.stale_until = now + STALE_RECHECK
