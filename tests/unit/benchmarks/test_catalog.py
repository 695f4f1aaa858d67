"""The catalog of scenarios: selection in catalog order, and places for scenarios whose modules
other branches bring."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from benchmarks import catalog
from benchmarks.scenarios import Context, Skip


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


def test_an_absent_module_is_a_skip(tmp_path: Path) -> None:
    ctx = Context(tmp_path, 1.0, 1, 1)
    with pytest.raises(Skip, match=r"benchmarks/no_such_scenario\.py is not in this tree"):
        catalog.external("no_such_scenario", "run")(ctx)


def test_a_present_module_is_called(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("benchmarks.arrived")
    seen: list[Context] = []

    def arrived(ctx: Context) -> dict[str, Any]:
        seen.append(ctx)
        return {"status": "ok", "figure": 1}

    module.arrived = arrived  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks.arrived", module)
    ctx = Context(tmp_path, 1.0, 1, 1)
    assert catalog.external("arrived", "arrived")(ctx) == {"status": "ok", "figure": 1}
    assert seen == [ctx]


def test_a_module_missing_an_import_of_its_own_is_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Not "not in this tree": the module is there and broken, which the run must show.
    (tmp_path / "broken_one.py").write_text("import no_such_dependency_here\n")
    import benchmarks

    monkeypatch.setattr(benchmarks, "__path__", [*benchmarks.__path__, str(tmp_path)])
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_here"):
        catalog.external("broken_one", "run")(Context(tmp_path, 1.0, 1, 1))
