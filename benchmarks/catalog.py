"""Every scenario ``make bench`` knows, by name, in the order it runs them and RESULTS.md shows
them. A scenario is a function ``(Context) -> dict`` (a JSON-ready result with ``"status"``;
see report.py for what it may hold); adding one is one line here.

Scenarios written on other branches are named here before their modules arrive: ``external``
imports the module when the scenario runs, and until it exists the scenario is reported as
skipped rather than failing the run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from benchmarks import churn, misses, scenarios
from benchmarks.scenarios import Context, Skip

Scenario = Callable[[Context], dict[str, Any]]


def external(module: str, function: str) -> Scenario:
    """``benchmarks.<module>.<function>``, looked up when the scenario runs."""
    qualified = f"benchmarks.{module}"

    def run(ctx: Context) -> dict[str, Any]:
        try:
            loaded = importlib.import_module(qualified)
        except ModuleNotFoundError as err:
            if err.name != qualified:  # the module is there but something it imports is not
                raise
            raise Skip(f"benchmarks/{module}.py is not in this tree") from None
        result: dict[str, Any] = getattr(loaded, function)(ctx)
        return result

    run.__name__ = function
    return run


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
    "capacity": external("capacity", "capacity"),
    "hosts_scale": external("hosts_scale", "hosts_scale"),
    "swarm_calls": external("swarm_calls", "swarm_calls"),
}


def select(only: list[str] | None, skip: list[str] | None) -> list[str]:
    """The scenarios to run, in catalog order: ``only`` those (all if None), less ``skip``."""
    unknown = sorted((set(only or []) | set(skip or [])) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"unknown scenarios: {', '.join(unknown)}")
    return [name for name in SCENARIOS
            if (only is None or name in only) and name not in (skip or [])]
