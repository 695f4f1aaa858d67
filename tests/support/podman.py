"""Rootful Podman with its Docker-compatible API, for tests/engine/test_podman.py.

``podman_service`` imports the test image with ``podman import`` (no registry), starts ``podman
system service`` on a socket of the test's own (so it is in nobody else's way, and stopped with
the test), and yields a docker SDK client for it. ``Lab`` (tests/support/engine.py) then makes
networks and containers through that API exactly as it does on Docker, with names under the
caller's prefix and subnets that no Docker or Podman network overlaps (both put their bridges on
this host's routing table).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from tests.conftest import IN_CI
from tests.support.engine import IMAGE, EngineUnavailable, _rootfs_tar, engine_client
from tests.support.proc import stop

CONTAINERS_CONF = Path("/etc/containers/containers.conf")
START_SECONDS = 30.0


@dataclass
class Podman:
    url: str
    client: docker.DockerClient
    others: tuple[docker.DockerClient, ...]  # the Docker engine, whose subnets are avoided


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"Podman required in CI: {message}", pytrace=False)
    pytest.skip(message)


def _podman(*argv: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["podman", *argv], input=data, capture_output=True, timeout=120,
                          check=False)


def ensure_image() -> None:
    """The test image (busybox-static) as ``localhost/dockdns-test:busybox``, by podman import."""
    if _podman("image", "exists", f"localhost/{IMAGE}").returncode == 0:
        return
    done = _podman("import", "-", f"localhost/{IMAGE}", data=_rootfs_tar())
    if done.returncode != 0:
        raise RuntimeError(f"podman import failed: {done.stderr.decode(errors='replace')}")


@contextlib.contextmanager
def podman_service() -> Iterator[Podman]:
    if shutil.which("podman") is None:
        _unavailable("podman is not installed (tests/setup.sh installs it)")
    if "default_ulimits" not in (CONTAINERS_CONF.read_text() if CONTAINERS_CONF.exists()
                                 else ""):
        _unavailable(f"{CONTAINERS_CONF} lacks 'default_ulimits = []' (tests/setup.sh writes "
                     "it; without it runc cannot start containers here)")
    ensure_image()
    others: tuple[docker.DockerClient, ...] = ()
    with contextlib.suppress(EngineUnavailable):
        others = (engine_client(),)
    scratch = Path(tempfile.mkdtemp(prefix="dockdns-host-podman-"))
    url = f"unix://{scratch}/podman.sock"
    with (scratch / "service.log").open("wb") as log:
        service = subprocess.Popen(["podman", "system", "service", "--time=0", url],
                                   stdout=log, stderr=subprocess.STDOUT)
    client: docker.DockerClient | None = None
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if service.poll() is not None:
                raise RuntimeError("podman system service exited:\n"
                                   + (scratch / "service.log").read_text(errors="replace"))
            if (scratch / "podman.sock").exists():
                client = docker.DockerClient(base_url=url, timeout=60)
                with contextlib.suppress(docker.errors.DockerException, OSError):
                    if client.ping():
                        break
                client.close()
                client = None
            if time.monotonic() > deadline:
                raise RuntimeError("podman system service did not answer")
            time.sleep(0.1)
        yield Podman(url, client, others)
    finally:
        if client is not None:
            client.close()
        stop(service, timeout=20)
        shutil.rmtree(scratch, ignore_errors=True)
