"""Every scenario ``make bench`` knows, by name, in the order it runs them and RESULTS.md shows
them. A scenario is a function ``(Context) -> dict`` (a JSON-ready result with ``"status"``;
see report.py for what it may hold); adding one is one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks import capacity, churn, hosts_scale, misses, scenarios, swarm_calls
from benchmarks.scenarios import Context

Scenario = Callable[[Context], dict[str, Any]]


SCENARIOS: dict[str, Scenario] = {
    "local_names": scenarios.local_names,
    "cache_hits": scenarios.cache_hits,
    "forwarded_misses": misses.forwarded_misses,
    "container_names": scenarios.container_names,
    "registry_scaling": scenarios.registry_scaling,
    "workers": scenarios.workers,
    "propagation": scenarios.propagation,
    "churn": churn.churn,
    "dead_upstream": scenarios.dead_upstream,
    "capacity": capacity.capacity,
    "hosts_scale": hosts_scale.hosts_scale,
    "swarm_calls": swarm_calls.swarm_calls,
}


def select(only: list[str] | None, skip: list[str] | None) -> list[str]:
    """The scenarios to run, in catalog order: ``only`` those (all if None), less ``skip``."""
    unknown = sorted((set(only or []) | set(skip or [])) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"unknown scenarios: {', '.join(unknown)}")
    return [name for name in SCENARIOS
            if (only is None or name in only) and name not in (skip or [])]
