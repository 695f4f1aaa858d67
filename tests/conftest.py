"""Shared fixtures. Engine-backed tests are marked ``docker``; see tests/support/engine.py."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def hosts_file(tmp_path: os.PathLike[str]) -> str:
    path = os.path.join(tmp_path, "hosts")
    with open(path, "w") as handle:
        handle.write("10.1.2.3 web1 Web-Alias\n10.1.2.4 multi\n10.1.2.5 multi\nfd00::7 multi\n")
    return path
