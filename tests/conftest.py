"""Shared fixtures. Engine-backed tests are marked ``docker``; see tests/support/engine.py."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test a compiled module older than its source: Python imports the compiled copy,
    so the suite (and every daemon it starts from this tree) would test code that is not there."""
    from resolver.ops import buildinfo

    stale = buildinfo.per_query().stale
    if stale:
        pytest.exit(f"changed since they were compiled: {', '.join(stale)}; compile them again "
                    "with `make setup` (or pip install -e .)", returncode=4)


@pytest.fixture
def hosts_file(tmp_path: os.PathLike[str]) -> str:
    path = os.path.join(tmp_path, "hosts")
    with open(path, "w") as handle:
        handle.write("10.1.2.3 web1 Web-Alias\n10.1.2.4 multi\n10.1.2.5 multi\nfd00::7 multi\n")
    return path
