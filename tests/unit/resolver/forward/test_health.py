"""Upstream health bookkeeping: two silent attempts in a row mark an upstream down, it is asked
last-resort only, and one answer brings it back."""

from __future__ import annotations

from resolver.dns.addresses import HostPort
from resolver.forward.health import FAILURES_TO_DOWN, UpstreamHealth

A, B, C = HostPort("127.0.0.1", 5301), HostPort("127.0.0.2", 5301), HostPort("::1", 5301)


def test_down_after_failures_in_a_row_and_back_after_a_success() -> None:
    health = UpstreamHealth()
    assert FAILURES_TO_DOWN == 2
    health.failed(A)
    assert not health.is_down(A) and health.order([A, B]) == [A, B]
    health.failed(A)
    assert health.is_down(A) and health.down() == [A]
    assert health.order([A, B, C]) == [B, C]
    health.succeeded(A)
    assert not health.is_down(A) and health.down() == []
    # The count started again: one more failure is not enough.
    health.failed(A)
    assert not health.is_down(A)


def test_a_success_in_between_resets_the_count() -> None:
    health = UpstreamHealth(failures_to_down=3)
    for _ in range(2):
        health.failed(A)
    health.succeeded(A)
    for _ in range(2):
        health.failed(A)
    assert not health.is_down(A)
    health.failed(A)
    assert health.is_down(A)
    health.succeeded(B)  # never seen: nothing to do
    assert health.down() == [A]


def test_all_down_asks_all() -> None:
    health = UpstreamHealth(failures_to_down=1)
    health.failed(A)
    health.failed(B)
    assert health.order([A, B]) == [A, B] and health.order([]) == []


def test_forget_except() -> None:
    health = UpstreamHealth(failures_to_down=1)
    health.failed(A)
    health.failed(B)
    health.forget_except({B})
    assert health.down() == [B] and not health.is_down(A)
