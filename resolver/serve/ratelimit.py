"""Response rate limiting per client address, for UDP (where a source address can be forged and
dockdns could be used to amplify traffic towards a victim). TCP is not limited: its handshake
proves the source.

Each client has a token bucket refilled at ``rate`` per second up to ``burst``. Beyond it, every
``slip``-th query gets an empty truncated reply (TC=1), so a real client behind a busy address can
retry over TCP, and the others are dropped: the BIND/Knot "slip" scheme.
"""

from __future__ import annotations

from resolver.dns import wire
from resolver.dns.addresses import is_loopback

ALLOW = 0
SLIP = 1
DROP = 2

# Client buckets remembered at once. A spoofed flood from random sources would otherwise grow
# the table without bound; past this the table is emptied, which only forgives past excess.
# A bucket (the address, a list of three floats, a dict slot) is ~250 bytes: 100,000 is ~25 MB
# and more than every address of a /16, the largest subnet Docker hands a network by default.
MAX_CLIENTS = 100_000
# One slipped (TC=1) reply per this many limited queries; 2 as in BIND's default.
DEFAULT_SLIP = 2


class RateLimiter:
    def __init__(self, rate: float, burst: float | None = None, slip: int = DEFAULT_SLIP) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self.slip = slip
        # client -> [tokens, last refill time, limited count], or None for exempt clients.
        self._buckets: dict[str, list[float] | None] = {}
        self.limited = 0

    def check(self, client: str, now: float) -> int:
        """ALLOW, SLIP or DROP for one query from ``client`` at monotonic time ``now``."""
        buckets = self._buckets
        bucket = buckets.get(client, False)
        if bucket is None:
            return ALLOW
        if bucket is False:
            if len(buckets) >= MAX_CLIENTS:
                buckets.clear()
            if is_loopback(client):
                buckets[client] = None
                return ALLOW
            buckets[client] = [self.burst - 1.0, now, 0.0]
            return ALLOW
        assert isinstance(bucket, list)
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return ALLOW
        bucket[0] = tokens
        bucket[2] += 1
        self.limited += 1
        if self.slip and int(bucket[2]) % self.slip == 0:
            return SLIP
        return DROP


def slip_reply(packet: bytes) -> bytes | None:
    """An empty reply with TC=1 for a rate-limited query, or None when it does not parse."""
    try:
        query = wire.parse_query(packet)
    except (wire.DropQuery, wire.QueryError):
        return None
    reply = bytearray(wire.build_reply(query, wire.NOERROR, [], wire.MAX_UDP_SIZE))
    reply[2] |= wire.TC >> 8
    return bytes(reply)
