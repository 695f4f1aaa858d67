"""The token-bucket limiter on its own (the socket test is in test_ratelimit.py)."""

from __future__ import annotations

import dns.flags
import dns.message

from resolver.serve.ratelimit import ALLOW, DROP, SLIP, RateLimiter, slip_reply


def test_burst_then_slip_and_drop_then_refill() -> None:
    limiter = RateLimiter(rate=10, burst=5, slip=2)
    outcomes = [limiter.check("10.0.0.1", 0.0) for _ in range(9)]
    assert outcomes == [ALLOW] * 5 + [DROP, SLIP, DROP, SLIP]
    assert limiter.check("10.0.0.2", 0.0) == ALLOW  # per client
    assert limiter.check("10.0.0.1", 0.5) == ALLOW  # refilled at 10/s


def test_loopback_is_exempt() -> None:
    limiter = RateLimiter(rate=1, burst=1)
    assert {limiter.check("127.0.0.1", 0.0) for _ in range(100)} == {ALLOW}
    assert {limiter.check("::1", 0.0) for _ in range(100)} == {ALLOW}


def test_slip_reply_is_truncated_and_empty() -> None:
    query = dns.message.make_query("web1", "A")
    reply = slip_reply(query.to_wire())
    assert reply is not None
    parsed = dns.message.from_wire(reply)
    assert parsed.id == query.id and parsed.flags & dns.flags.TC and not parsed.answer
    assert slip_reply(b"\x00" * 5) is None
