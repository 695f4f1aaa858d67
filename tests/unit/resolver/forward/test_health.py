"""The upstream infrastructure cache (resolver/forward/health.py): RTT order with a band and
exploration, and the probe backoff of an upstream that is down."""

from __future__ import annotations

from resolver.dns.addresses import HostPort
from resolver.forward.health import PROBE_FIRST, PROBE_MAX, RTT_BAND, UpstreamHealth

A, B, C = (HostPort(f"192.0.2.{n}", 53) for n in (1, 2, 3))


def test_upstreams_within_the_rtt_band_keep_their_configured_order() -> None:
    health = UpstreamHealth(chance=lambda: 1.0)
    health.succeeded(A, 0.010)
    health.succeeded(B, 0.001)
    health.succeeded(C, 0.010 + RTT_BAND / 2)
    assert health.order([A, B, C]) == [A, B, C]


def test_a_slow_upstream_goes_behind_the_fast_ones_and_is_explored_now_and_then() -> None:
    health = UpstreamHealth(chance=lambda: 1.0)
    health.succeeded(A, 0.9)
    health.succeeded(B, 0.002)
    health.succeeded(C, 0.003)
    assert health.order([A, B, C]) == [B, C, A]
    exploring = UpstreamHealth(chance=lambda: 0.0)
    exploring.succeeded(A, 0.9)
    exploring.succeeded(B, 0.002)
    assert exploring.order([A, B]) == [A, B]


def test_the_rtt_is_smoothed() -> None:
    health = UpstreamHealth()
    health.succeeded(A, 0.1)
    health.succeeded(A, 0.9)
    srtt = health.srtt(A)
    assert srtt is not None and 0.1 < srtt < 0.9 / 2


def test_probes_of_a_down_upstream_back_off_until_it_answers() -> None:
    health = UpstreamHealth(failures_to_down=2)
    health.failed(A, 100.0)
    assert health.due(1e9) == []  # one failure: not down, never probed
    health.failed(A, 100.0)
    assert health.order([A]) == []
    assert health.due(100.0) == [] and health.due(100.0 + PROBE_FIRST) == [A]
    now = 100.0 + PROBE_FIRST
    intervals = []
    for _ in range(6):
        health.probe_failed(A, now)
        step = next(t for t in (x / 4 for x in range(1, 400)) if health.due(now + t))
        intervals.append(step)
        now += step
    assert intervals == [2.0, 4.0, 8.0, PROBE_MAX, PROBE_MAX, PROBE_MAX]
    health.succeeded(A, 0.01)
    assert health.order([A]) == [A] and health.due(now + 1e6) == []


def test_orders_are_kept_until_health_changes() -> None:
    health = UpstreamHealth(chance=lambda: 1.0)
    servers = (A, B, C)
    health.succeeded(A, 0.001)
    first = health.order(servers)
    assert health.order(servers) is first  # kept, not made again per question
    health.succeeded(A, 0.0015)  # a small RTT change cannot reorder anything: still kept
    assert health.order(servers) is first
    health.failed(B, 0.0)
    health.failed(B, 0.0)  # down: made again without it
    assert health.order(servers) == [A, C]
    health.succeeded(B, 0.001)  # back
    assert health.order(servers) == [A, B, C]
    health.succeeded(A, 0.9)
    for _ in range(40):  # its smoothed RTT climbs past the band: it goes behind the others
        health.succeeded(A, 0.9)
    assert health.order(servers) == [B, C, A]
    health.mark_loop(C)
    assert health.order(servers) == [B, A]
