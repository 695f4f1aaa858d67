"""The dockdns image itself, built by the project's own ``deploy/image.py`` (what ``make image``
runs), and containers of it that a ``Lab`` owns.

The tag is per checkout (several worktrees share one engine and may hold different code); the
tests then run the image by its ID, which another build cannot move under them. The build is
cached (the locally made base by a hash of its files, the rest by Docker's layer cache), so each
test module asking for it costs seconds after the first.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Sequence

import docker

from tests.support.daemon import REPO
from tests.support.engine import OWNER, OWNER_LABEL, Box, Lab

BUILD = [sys.executable, "deploy/image.py"]
TAG = f"dockdns-test:image-{hashlib.sha256(str(REPO).encode()).hexdigest()[:10]}"
# A locally made base needs seconds; python:3.11-slim is never used here (it needs a registry).
BUILD_SECONDS = 900

_built: dict[str, str] = {}


def dockdns_image(client: docker.DockerClient) -> str:
    """The image's ID, built (once per test process) from this checkout."""
    if TAG not in _built:
        done = subprocess.run([*BUILD, "--tag", TAG], cwd=REPO, capture_output=True, text=True,
                              check=False, timeout=BUILD_SECONDS)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(BUILD)} failed:\n{done.stderr[-3000:]}")
        _built[TAG] = str(client.images.get(TAG).id)
    return _built[TAG]


def docker_gid() -> str:
    """The group of the engine's socket, for ``--group-add`` (the image runs as nobody)."""
    return subprocess.run(["stat", "-c", "%g", "/var/run/docker.sock"], capture_output=True,
                          text=True, check=True).stdout.strip()


def run_dockdns(made: Lab, name: str, image: str, docker_args: Sequence[str],
                dockdns_args: Sequence[str]) -> Box:
    """``docker run -d`` of the image, as the README's commands do, with the lab's name and owner
    label (so the lab removes it); ``docker_args`` go before the image, ``dockdns_args`` after."""
    made._named(name)
    argv = ["docker", "run", "-d", "--name", name, "--label", f"{OWNER_LABEL}={OWNER}",
            *docker_args, image, *dockdns_args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {done.stderr.strip()}")
    box = Box(name, done.stdout.strip(), made.client)
    made.boxes[name] = box
    return box


def container_logs(box: Box) -> str:
    logs: bytes = box.client.api.logs(box.id)
    return logs.decode(errors="replace")


def health(box: Box) -> str:
    """Docker's view of the image's HEALTHCHECK: starting, healthy or unhealthy."""
    return str((box.inspect()["State"].get("Health") or {}).get("Status", "none"))


def process_status(box: Box) -> dict[str, str]:
    """/proc/PID/status of the container's main process, read on the host."""
    with open(f"/proc/{box.pid}/status") as status:
        return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)
