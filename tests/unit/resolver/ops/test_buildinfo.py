"""buildinfo: which loaded modules are compiled, and which of those are older than their source."""

from __future__ import annotations

import importlib.machinery
import os
import sys
import types
from pathlib import Path

import pytest

from resolver.ops import buildinfo
from resolver.ops.buildinfo import Build

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def fake_module(monkeypatch: pytest.MonkeyPatch, name: str, origin: Path) -> None:
    module = types.ModuleType(name)
    module.__file__ = str(origin)
    monkeypatch.setitem(sys.modules, name, module)


def test_compiled_modules_are_listed_and_a_newer_source_makes_one_stale(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for stem, source_after in (("fresh", False), ("edited", True)):
        compiled, source = tmp_path / f"{stem}{SUFFIX}", tmp_path / f"{stem}.py"
        compiled.write_bytes(b"")
        source.write_text("")
        os.utime(compiled, (1000, 1000))
        os.utime(source, (2000, 2000) if source_after else (500, 500))
        fake_module(monkeypatch, f"resolver.zz_{stem}", compiled)
    # Compiled without its source beside it (a wheel installed without sources): never stale.
    fake_module(monkeypatch, "discovery.zz_bare", tmp_path / f"bare{SUFFIX}")
    # Outside dockdns's packages, or pure Python: not counted.
    fake_module(monkeypatch, "elsewhere.zz_ext", tmp_path / f"fresh{SUFFIX}")
    fake_module(monkeypatch, "resolver.zz_pure", tmp_path / "fresh.py")
    build = buildinfo.current()
    assert {"resolver.zz_fresh", "resolver.zz_edited", "discovery.zz_bare"} <= set(build.compiled)
    assert not {"elsewhere.zz_ext", "resolver.zz_pure"} & set(build.compiled)
    assert "resolver.zz_edited" in build.stale
    assert not {"resolver.zz_fresh", "discovery.zz_bare"} & set(build.stale)


def test_the_build_describes_itself() -> None:
    assert Build((), ()).kind == "pure"
    assert Build((), ()).describe().startswith("pure Python")
    compiled = Build(("resolver.dns.wire", "resolver.answer.memo"), ())
    assert compiled.kind == "compiled"
    assert compiled.describe() == "2 per-query modules compiled (mypyc)"


def test_per_query_loads_the_per_query_modules_first() -> None:
    build = buildinfo.per_query()
    assert set(buildinfo.PER_QUERY_ENTRIES) <= set(sys.modules)
    assert build == buildinfo.current()
    handler = buildinfo.PER_QUERY_ENTRIES[0]
    assert (handler in build.compiled) == str(sys.modules[handler].__file__).endswith(SUFFIX)
