"""The project's own modules, found on disk: shared by the layout and import tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("resolver", "discovery")
UNIT = ROOT / "tests" / "unit"


def module_files() -> list[Path]:
    """Every ``.py`` file under the top-level packages, sorted."""
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    """``resolver/dns/wire.py`` -> ``resolver.dns.wire``; a package's ``__init__`` -> itself."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> list[str]:
    return [module_name(path) for path in module_files()]
