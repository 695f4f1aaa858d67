"""No import cycles and the layering of the packages: every module imports on its own in a fresh
interpreter (a cycle shows up as an ImportError when its module happens to be the first one
imported), the graph of imports between our modules has no cycle at all, the pure wire package
depends on nothing above it, and discovery never reaches into the resolver."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.unit.modules import ROOT, all_modules, module_files, module_name

# What resolver/dns (bytes in, bytes out) must never depend on: everything built on top of it.
ABOVE_DNS = ("resolver.daemon", "resolver.ops", "resolver.serve", "resolver.forward",
             "resolver.answer", "resolver.config")


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in its body (top level or in a function)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from a.b import c" imports a.b.c when c is a module, else a name in a.b.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            # "import a.b.c" also runs a and a.b: the nearest known module stands for them.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != this:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    known = set(all_modules())
    return {module_name(path): imports_of(path, known) for path in module_files()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if colour.get(target, BLACK) == GREY:
                return [*stack[stack.index(target):], target]
            if colour.get(target) == WHITE:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        colour[node] = BLACK
        return None

    for node in sorted(graph):
        if colour[node] == WHITE:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_is_read_from_the_sources() -> None:
    # Guards the checks below against an empty or wrongly resolved graph that would pass
    # vacuously: these edges are in the code today.
    graph = import_graph()
    assert "resolver.dns.wire" in graph and len(graph) > 50
    assert "discovery.registry.model" in graph["discovery.swarm.model"]
    assert "resolver.config.settings" in graph["resolver.config.reload"]
    assert {"discovery.docker.setup", "discovery.hosts.setup", "discovery.swarm.setup"} <= \
        graph["resolver.daemon.sources"]


def test_find_cycle_reports_the_path() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) is None


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_dns_depends_on_nothing_above_it() -> None:
    wrong = {(module, target) for module, targets in import_graph().items()
             if module.startswith("resolver.dns") for target in targets
             if target.startswith(ABOVE_DNS)}
    assert not wrong, sorted(wrong)


def test_discovery_imports_only_the_wire_layer_of_the_resolver() -> None:
    # Sources may encode records with resolver/dns (pure, importing nothing above it: see the
    # test before); nothing of the daemon, the answer path or the forwarder.
    wrong = {(module, target) for module, targets in import_graph().items()
             if module.startswith("discovery") for target in targets
             if target.split(".")[0] == "resolver" and not target.startswith("resolver.dns")}
    assert not wrong, sorted(wrong)


def _import_alone(module: str) -> tuple[str, int, str]:
    run = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return module, run.returncode, run.stderr.strip()


@pytest.mark.parametrize("chunk", range(2))
def test_every_module_imports_alone(chunk: int) -> None:
    # Two halves so each test stays short; within each, one fresh interpreter per module (the
    # module is the first of ours imported there), run a few at a time.
    # __main__ is left out: importing it runs the command line.
    modules = [m for m in all_modules() if not m.endswith(".__main__")][chunk::2]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(_import_alone, modules))
    failures = [f"{module}: {stderr}" for module, code, stderr in results if code != 0]
    assert not failures, "\n\n".join(failures)
