"""The catalog of scenarios: selection in catalog order, every scenario of issue 16 listed."""

from __future__ import annotations

import pytest

from benchmarks import catalog


def test_select() -> None:
    assert catalog.select(None, None) == list(catalog.SCENARIOS)
    assert catalog.select(["churn", "local_names"], None) == ["local_names", "churn"]
    everything_but = catalog.select(None, ["churn", "capacity"])
    assert "churn" not in everything_but and "capacity" not in everything_but
    assert len(everything_but) == len(catalog.SCENARIOS) - 2
    with pytest.raises(ValueError, match="unknown scenarios: nope"):
        catalog.select(["nope"], None)


def test_the_new_scenarios_are_listed() -> None:
    for name in ("forwarded_misses", "churn", "capacity", "hosts_scale", "swarm_calls"):
        assert name in catalog.SCENARIOS
