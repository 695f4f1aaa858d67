"""Which build this process runs: the per-query modules compiled (setup.py) or pure Python.

An operator reads it in the startup line and in ``dockdns_build_info``; a developer is told
when a compiled module is older than the source beside it, because the compiled copy is the one
Python imports and an edit to the ``.py`` would otherwise change nothing, silently.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("resolver", "discovery")
# A source newer than its compiled module by less than this is not an edit: pip unpacks a
# wheel's sources and extensions in one go, in either order, moments apart.
UNPACKED_WITHIN = 2.0
_EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)
# Importing these loads every module setup.py compiles (each is on every query's path).
PER_QUERY_ENTRIES = ("resolver.answer.handler", "resolver.forward.forwarder", "resolver.serve.udp")


@dataclass(frozen=True, slots=True)
class Build:
    compiled: tuple[str, ...]  # modules loaded from a compiled extension
    stale: tuple[str, ...]  # of those, the ones whose .py source changed after compiling

    @property
    def kind(self) -> str:
        return "compiled" if self.compiled else "pure"

    def describe(self) -> str:
        if not self.compiled:
            return "pure Python (no per-query module compiled; see setup.py)"
        return f"{len(self.compiled)} per-query modules compiled (mypyc)"


def _stale(origin: Path) -> bool:
    name = origin.name
    for suffix in _EXTENSIONS:
        if name.endswith(suffix):
            source = origin.with_name(name[: -len(suffix)] + ".py")
            try:
                return source.stat().st_mtime > origin.stat().st_mtime + UNPACKED_WITHIN
            except OSError:  # installed without sources: nothing to be stale against
                return False
    return False


def current() -> Build:
    """The build of the modules loaded in this process (the daemon asks once it has built its
    parts, when every per-query module is loaded)."""
    compiled: list[str] = []
    stale: list[str] = []
    for name, module in sorted(sys.modules.items()):
        if name.partition(".")[0] not in PACKAGES:
            continue
        origin = getattr(module, "__file__", None)
        if not origin or not origin.endswith(_EXTENSIONS):
            continue
        compiled.append(name)
        if _stale(Path(origin)):
            stale.append(name)
    return Build(tuple(compiled), tuple(stale))


def per_query() -> Build:
    """The build of the per-query modules of this installation, imported first: for a process
    that is not the daemon (the test suite, the benchmark's report)."""
    for name in PER_QUERY_ENTRIES:
        importlib.import_module(name)
    return current()
