"""The Docker engine side of the benchmarks: a network and containers the harness makes itself.

Everything here is named ``db-<pid>-*``, labelled ``dockdns.bench=<host>:<pid>`` (the run that
made it) and lives on ``dockdns-bench`` (10.252.0.0/16) or the next of NETWORKS that is free. A
run removes what it made and what a run that is no longer alive left behind (interrupted), never
what a run going on beside it made, nor anything else on the engine. The image is built locally
from Debian's static busybox (``docker import``; no pulls). Docker's own resolver is asked only
for names of containers made here: anything else it would forward off the machine.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from typing import Any

IMAGE = "dockdns-bench:busybox"
# The harness's network while a scenario runs (bench_network sets these three): the first of
# NETWORKS the engine lets it have. Docker 20.10 can keep a stale endpoint of a container removed
# amid concurrent removals until the engine restarts, and such a network can then never be
# removed; the next run takes the next name and subnet instead of failing.
NETWORKS = (("dockdns-bench", "10.252.0.0/16", "10.252.0.1"),
            *((f"dockdns-bench-{i}", f"10.253.{16 * i}.0/20", f"10.253.{16 * i}.1")
              for i in range(16)))
NETWORK, SUBNET, GATEWAY = NETWORKS[0]
LABEL = "dockdns.bench"
# The value of LABEL on this run's objects: the process that made them, so that a cleanup can
# tell a concurrent run's objects (left alone) from an interrupted run's (removed).
RUN = f"{socket.gethostname()}:{os.getpid()}"
PREFIX = f"db-{os.getpid()}-"  # names unique per run: two runs at once never clash
BUSYBOX = "/bin/busybox"  # Debian's busybox-static: runs in an empty root filesystem
# Containers only sleep; this bounds their life should the harness die without cleaning up.
LIFETIME = "1800"
ENGINE_LOG = "/tmp/dockdns-bench-dockerd.log"
ENGINE_START_TIMEOUT = 60.0


def _ping() -> str | None:
    """None when an engine answers, else why not."""
    try:
        import docker

        from discovery.docker.engine_socket import DEFAULT_ENGINE, check_unix_socket

        check_unix_socket(os.environ.get("DOCKER_HOST", DEFAULT_ENGINE), 10)
        client = docker.from_env(timeout=10)
    except Exception as err:  # the SDK raises several unrelated types for "no engine"
        return str(err)
    try:
        client.ping()
    except Exception as err:  # the SDK raises several unrelated types for "no engine"
        return str(err)
    finally:
        client.close()  # each probe's socket is closed here, not whenever the GC gets to it
    return None


# The dockerd this process started outlives it on purpose; holding the handle keeps Popen from
# warning that it was dropped while its process still runs.
_started_engines: list[subprocess.Popen[bytes]] = []


def _start_engine() -> None:
    """Start Debian's dockerd when none answers: a fresh CI machine has none running. It is
    left running for whatever runs next, as an engine started by hand would be."""
    if shutil.which("dockerd") is None:
        return
    with open(ENGINE_LOG, "ab") as log:
        _started_engines.append(subprocess.Popen(
            ["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            start_new_session=True))
    deadline = time.monotonic() + ENGINE_START_TIMEOUT
    while time.monotonic() < deadline and _ping() is not None:
        time.sleep(0.5)


def unavailable() -> str | None:
    """Why the engine scenarios cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (nsenter into a container's network namespace)"
    for tool in ("docker", "nsenter", "dig"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists(BUSYBOX):
        return f"{BUSYBOX} is missing (Debian package busybox-static)"
    if _ping() is not None:
        _start_engine()
    problem = _ping()
    return f"no Docker engine: {problem}" if problem else None


def client() -> Any:
    import docker

    return docker.from_env(timeout=60)


def ensure_image(engine: Any) -> None:
    """The busybox image, imported from a root filesystem built here (no registry)."""
    import docker.errors

    with contextlib.suppress(docker.errors.ImageNotFound):
        engine.images.get(IMAGE)
        return
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in ("sh", "sleep"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    subprocess.run(["docker", "import", "-", IMAGE], input=archive.getvalue(), check=True,
                   capture_output=True, timeout=120)


class StaleNetwork(Exception):
    """The engine keeps a network of the harness's with an endpoint nobody holds."""


def alive(run: str) -> bool:
    """Whether the process named ``run`` ("<host>:<pid>": a LABEL value here, the tests' owner
    label too) may still be using what it made."""
    host, _, pid = run.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        # Another machine's, or made before runs were labelled with their process ("1"): not
        # this run's to judge (such a run may be going on now).
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ours(labels: dict[str, str] | None) -> bool:
    """Made by this run, or by one that is gone (interrupted before its own cleanup)."""
    run = (labels or {}).get(LABEL, "")
    return run == RUN or not alive(run)


def cleanup(engine: Any) -> list[str]:
    """Remove what this run made and what a run no longer alive left behind (only that); the
    names of those networks the engine would not let go (see NETWORKS)."""
    import docker.errors

    for container in engine.containers.list(all=True, filters={"label": LABEL}):
        if _ours(container.labels):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
    stale = []
    for network in engine.networks.list(filters={"label": LABEL}):
        if not _ours(network.attrs.get("Labels")):
            continue
        try:
            _remove_network(network)
        except StaleNetwork:
            stale.append(network.name)
    return stale


# The engine releases a removed container's endpoint a moment after the removal returns; until
# then the network refuses to go ("has active endpoints"). Seconds to keep asking while it still
# lists containers, and once it lists none (then the endpoint is stale, or nearly released).
NETWORK_RELEASE_TIMEOUT = 15.0
STALE_AFTER = 2.0


def _remove_network(network: Any) -> None:
    import docker.errors

    started = time.monotonic()
    emptied: float | None = None
    while True:
        try:
            network.remove()
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as err:
            if "active endpoints" not in str(err):
                raise
            now = time.monotonic()
            with contextlib.suppress(docker.errors.NotFound):
                network.reload()
            if not network.attrs.get("Containers"):
                emptied = now if emptied is None else emptied
            if now - started > NETWORK_RELEASE_TIMEOUT or (
                    emptied is not None and now - emptied > STALE_AFTER):
                raise StaleNetwork(network.name) from err
            time.sleep(0.2)


@contextlib.contextmanager
def bench_network(engine: Any) -> Iterator[Any]:
    """The harness's network, removed with its containers afterwards."""
    import docker.types

    global NETWORK, SUBNET, GATEWAY
    stale = cleanup(engine)
    ensure_image(engine)
    held = {str(((n.attrs.get("IPAM") or {}).get("Config") or [{}])[0].get("Subnet"))
            for n in engine.networks.list(filters={"label": LABEL})}
    usable = [choice for choice in NETWORKS if choice[0] not in stale and choice[1] not in held]
    if not usable:
        raise StaleNetwork(f"every network of the harness is held by the engine: {stale} "
                           "(restart dockerd to release them)")
    NETWORK, SUBNET, GATEWAY = usable[0]
    pool = docker.types.IPAMPool(subnet=SUBNET, gateway=GATEWAY)
    network = engine.networks.create(NETWORK, driver="bridge", labels={LABEL: RUN},
                                     ipam=docker.types.IPAMConfig(pool_configs=[pool]))
    try:
        yield network
    finally:
        if cleanup(engine):
            print(f"benchmarks: the engine keeps network {NETWORK} (a stale endpoint); the "
                  "next run uses another", file=sys.stderr)


def create(engine: Any, name: str) -> Any:
    """A sleeping container on the harness's network, created but not started."""
    assert name.startswith(PREFIX)
    return engine.containers.create(IMAGE, ["sleep", LIFETIME], name=name, network=NETWORK,
                                    labels={LABEL: RUN}, detach=True)


def start(engine: Any, name: str) -> Any:
    container = create(engine, name)
    container.start()
    container.reload()
    return container


def address(container: Any) -> str:
    return str(container.attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"])


def pid(container: Any) -> int:
    return int(container.attrs["State"]["Pid"])
