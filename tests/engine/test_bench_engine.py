"""The benchmark harness's cleanup on a real engine (benchmarks/engine.py): it removes what its
own run made and what a run that is gone left behind, and leaves alone what a run going on beside
it made, so two benchmark runs can share one engine."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest

from benchmarks import engine
from tests.support.engine import require_engine

pytestmark = pytest.mark.docker


@pytest.fixture
def other_run() -> Iterator[str]:
    """The LABEL value of a run that is alive (a process of this test's)."""
    process = subprocess.Popen(["sleep", "300"])
    try:
        yield f"{socket.gethostname()}:{process.pid}"
    finally:
        process.kill()
        process.wait()


def gone_run() -> str:
    process = subprocess.Popen(["true"])
    process.wait()  # reaped: its PID names no process now
    return f"{socket.gethostname()}:{process.pid}"


def made(client: Any, name: str, run: str) -> Any:
    return client.containers.create(engine.IMAGE, ["sleep", "60"], name=name,
                                    labels={engine.LABEL: run})


def exists(client: Any, container: Any) -> bool:
    try:
        client.containers.get(container.id)
    except docker.errors.NotFound:
        return False
    return True


def test_cleanup_removes_its_own_and_the_dead_runs_only(other_run: str) -> None:
    client = require_engine()
    engine.ensure_image(client)
    mine = engine.create(client, f"{engine.PREFIX}mine")
    orphan = made(client, f"{engine.PREFIX}orphan", gone_run())
    beside = made(client, f"{engine.PREFIX}beside", other_run)
    legacy = made(client, f"{engine.PREFIX}legacy", "1")  # an older harness's, maybe running
    try:
        assert mine.labels[engine.LABEL] == engine.RUN
        engine.cleanup(client)
        assert not exists(client, mine)
        assert not exists(client, orphan)
        assert exists(client, beside)
        assert exists(client, legacy)
    finally:
        for container in (mine, orphan, beside, legacy):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
