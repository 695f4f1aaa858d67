"""The compiled build (setup.py) and the pure-Python one answer the same, and each says which it is.

The suite runs the compiled per-query modules when they are built (``make setup`` builds them;
under CI=true they must be): every other test then exercises the compiled code users install.
This file also runs the daemon from a copy of the sources without them, as a machine with no C
compiler installs it, and asks both the same questions through real sockets.
"""

from __future__ import annotations

import importlib.machinery
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from resolver.ops import buildinfo
from tests.conftest import IN_CI
from tests.support.daemon import REPO, RunningDaemon, dockdns, http_get
from tests.support.net import addresses, ask
from tests.support.upstream import Dnsmasq, dnsmasq

FORWARDED = "far.build.test"
FORWARDED_ADDRESS = "192.0.2.77"
EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Dnsmasq]:
    with dnsmasq(f"--host-record={FORWARDED},{FORWARDED_ADDRESS}") as server:
        yield server


def compiled_in_tree() -> set[str]:
    """The modules of this tree that have a compiled extension beside their source."""
    found = set()
    for package in buildinfo.PACKAGES:
        for path in (REPO / package).rglob("*"):
            if path.name.endswith(EXTENSIONS):
                stem = path.name[: -len(next(s for s in EXTENSIONS if path.name.endswith(s)))]
                if path.with_name(stem + ".py").exists():
                    found.add(".".join(path.relative_to(REPO).with_name(stem).parts))
    return found


def build_info(daemon: RunningDaemon) -> dict[str, str]:
    assert daemon.metrics_port is not None
    status, _, body = http_get(daemon.metrics_port, "/metrics")
    assert status == 200
    match = re.search(r"^dockdns_build_info\{(.*)\} 1\.0$", body, re.MULTILINE)
    assert match is not None, body
    return dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))


def answers_both_ways(daemon: RunningDaemon) -> None:
    assert daemon.sees("web1") == {"10.1.2.3"}  # the hosts file: the local path
    assert daemon.sees("Web-Alias") == {"10.1.2.3"}
    for _ in range(2):  # a miss, forwarded; then the same from the cache
        reply = ask(daemon.host, daemon.port, FORWARDED)
        assert reply.rcode() == dns.rcode.NOERROR
        assert addresses(reply) == {FORWARDED_ADDRESS}


def test_the_daemon_runs_the_build_of_its_tree_and_says_which(hosts_file: str,
                                                              upstream: Dnsmasq) -> None:
    expected = compiled_in_tree()
    if IN_CI:
        # make setup compiles (DOCKDNS_COMPILE=1): the suite must test what users install.
        assert expected, "CI=true: no compiled module in the tree; make setup builds them"
    with dockdns("--hosts-file", hosts_file, "--upstream", upstream.address) as daemon:
        answers_both_ways(daemon)
        info = build_info(daemon)
        log = daemon.log()
    if expected:
        assert info == {"build": "compiled", "compiled_modules": str(len(expected)),
                        "stale_modules": "0"}
        assert f"{len(expected)} per-query modules compiled (mypyc)" in log
    else:
        assert info["build"] == "pure"
        assert "pure Python" in log


def test_the_pure_python_build_answers_the_same(tmp_path: Path, hosts_file: str,
                                                upstream: Dnsmasq) -> None:
    for package in buildinfo.PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    with dockdns("--hosts-file", hosts_file, "--upstream", upstream.address,
                 cwd=tmp_path) as daemon:
        answers_both_ways(daemon)
        info = build_info(daemon)
        log = daemon.log()
    assert info == {"build": "pure", "compiled_modules": "0", "stale_modules": "0"}
    assert "pure Python (no per-query module compiled" in log


def test_a_source_changed_after_compiling_is_named(tmp_path: Path, hosts_file: str,
                                                   upstream: Dnsmasq) -> None:
    if not compiled_in_tree():
        pytest.skip("no compiled module in this tree (make setup builds them)")
    for package in buildinfo.PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for group in REPO.glob("*__mypyc*"):  # the compiled modules' shared part
        shutil.copy2(group, tmp_path / group.name)
    edited = tmp_path / "resolver" / "answer" / "memo.py"
    edited.write_text(edited.read_text() + "\n# edited after compiling\n")
    with dockdns("--hosts-file", hosts_file, "--upstream", upstream.address,
                 cwd=tmp_path) as daemon:
        answers_both_ways(daemon)
        info = build_info(daemon)
        log = daemon.log()
    assert info["build"] == "compiled" and info["stale_modules"] == "1"
    assert "changed since they were compiled, so not what runs: resolver.answer.memo" in log
