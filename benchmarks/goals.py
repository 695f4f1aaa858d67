"""Targets a scenario declares in its own result (``"targets": [...]``), so that a new scenario
needs no edit of report.py to have its goals judged and shown in RESULTS.md.

Each is a JSON-ready dict: ``name`` (what is measured), ``goal`` (as text), ``measured`` (a number,
None when the scenario could not measure it), ``met`` (True, False or None), and optionally
``key`` (a stable identifier), ``shortfall``, and ``why`` / ``closes`` (shown next to a missed
target: why it was missed, what would close it).
"""

from __future__ import annotations

from typing import Any


def at_least(key: str, name: str, measured: float | None, goal: float,
             unit: str = "") -> dict[str, Any]:
    """Met when ``measured >= goal`` (a ratio where 1 means "as good as the other")."""
    text = f">= {goal:g}{unit}"
    if measured is None:
        return {"key": key, "name": name, "goal": text, "measured": None, "met": None}
    met = measured >= goal
    shortfall = "" if met or not goal else f"{(goal - measured) / goal:.1%} short"
    return {"key": key, "name": name, "goal": text, "measured": measured, "met": met,
            "shortfall": shortfall}


def at_most(key: str, name: str, measured: float | None, limit: float,
            unit: str = "") -> dict[str, Any]:
    """Met when ``measured <= limit``."""
    text = f"<= {limit:g}{unit}"
    if measured is None:
        return {"key": key, "name": name, "goal": text, "measured": None, "met": None}
    met = measured <= limit
    if met:
        shortfall = ""
    elif limit:
        shortfall = f"{(measured - limit) / limit:.1%} over"
    else:
        shortfall = f"{measured:g}{unit} over"
    return {"key": key, "name": name, "goal": text, "measured": measured, "met": met,
            "shortfall": shortfall}


def figure(name: str, value: Any, note: str = "") -> dict[str, Any]:
    """A reported figure: measured and shown, with no goal to meet."""
    return {"name": name, "value": value, "note": note}


def normalize(targets: Any, scenario: str) -> list[dict[str, Any]]:
    """A scenario's targets as a list of dicts with ``key``, ``name``, ``goal``, ``measured``
    and ``met``, whichever of the accepted shapes it gave them in: a list of such dicts (as made
    above); a dict of name -> such a dict (``value`` accepted for ``measured``); a dict of
    name -> whether it was met. Anything else is no targets, never an error: one scenario's
    odd result must not cost the run its report."""
    if isinstance(targets, dict):
        items = []
        for name, target in targets.items():
            if isinstance(target, dict):
                items.append({**target, "name": f"{scenario}: {target.get('name', name)}",
                              "key": target.get("key", f"{scenario}:{name}")})
            else:
                items.append({"name": f"{scenario}: {name}", "goal": str(name),
                              "key": f"{scenario}:{name}", "met": target})
    elif isinstance(targets, list):
        items = [target for target in targets if isinstance(target, dict)]
    else:
        return []
    found = []
    for number, target in enumerate(items):
        measured = target.get("measured", target.get("value"))
        met = target.get("met")
        found.append({
            **target,
            "key": str(target.get("key", f"{scenario}:{number}")),
            "name": str(target.get("name", f"{scenario}: target {number + 1}")),
            "goal": str(target.get("goal", "")),
            "measured": measured if isinstance(measured, int | float) else None,
            "met": bool(met) if isinstance(met, bool | int) else None,
        })
    return found
