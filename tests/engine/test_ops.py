"""Readiness, Docker metrics and systemd notification against a real engine.

The operations parts were first tested with hand-made registries and readiness checks; here the
daemon runs as a subprocess with its real Docker source, against a private dockerd the test stops
and starts (the shared engine is never stopped), and against the shared engine behind a relay the
test can hold (an engine that accepts connections but does not answer yet). Everything is read
the way an operator reads it: /readyz and /healthz over HTTP, /metrics scraped, sd_notify
datagrams on a socket the test owns, answers over DNS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import RunningDaemon, dockdns, http_get
from tests.support.engine import (
    Lab,
    PrivateEngine,
    lab,
    private_engine,
    require_engine,
    wait_for,
)
from tests.support.notify_socket import lines, notify_socket
from tests.support.scrape import Samples, scrape, value
from tests.support.sockproxy import UnixRelay

pytestmark = pytest.mark.docker

# The private engine's subnets: the top of this file's di- range, away from the shared-engine
# labs (which take /24s from the bottom of 10.248.0.0/17).
PRIVATE_POOL = "10.248.192.0/18"
PRIVATE_BRIDGE = "10.248.255.1/24"
SHARED_POOL = "10.248.0.0/17"


@pytest.fixture
def hosts(tmp_path: Path) -> str:
    path = tmp_path / "hosts"
    path.write_text("198.51.100.20 files.test\n")
    return str(path)


def readyz(daemon: RunningDaemon) -> tuple[int, str]:
    assert daemon.metrics_port is not None
    status, _, body = http_get(daemon.metrics_port, "/readyz")
    return status, body


def healthz(daemon: RunningDaemon) -> tuple[int, str]:
    assert daemon.metrics_port is not None
    status, _, body = http_get(daemon.metrics_port, "/healthz")
    return status, body


def metrics(daemon: RunningDaemon) -> Samples:
    assert daemon.metrics_port is not None
    return scrape(daemon.metrics_port)


def docker_names(made: Lab) -> int:
    """Distinct (network, name) pairs Docker gives the lab's running containers, read from the
    engine: the container name and the endpoint's aliases (on user-defined networks the engine
    puts the short ID and hostname among them; both are added here in any case)."""
    pairs: set[tuple[str, str]] = set()
    for box in made.boxes.values():
        data = box.inspect()
        if not data["State"]["Running"]:
            continue
        names = {data["Name"].lstrip("/"), data["Id"][:12], data["Config"]["Hostname"]}
        for network, endpoint in data["NetworkSettings"]["Networks"].items():
            if endpoint.get("IPAddress"):
                pairs.update((network, n.lower())
                             for n in names | set(endpoint.get("Aliases") or ()))
    return len(pairs)


@contextlib.contextmanager
def private_lab(engine: PrivateEngine) -> Iterator[Lab]:
    with contextlib.closing(engine.client()) as client:
        made = Lab(client, "di-p", pool=PRIVATE_POOL, others=(require_engine(),))
        try:
            yield made
        finally:
            with contextlib.suppress(Exception):
                made.cleanup()


def test_readiness_metrics_and_notify_follow_a_real_engine(tmp_path: Path, hosts: str,
                                                           upstream: str) -> None:
    with (private_engine("di-pe", PRIVATE_BRIDGE) as engine, private_lab(engine) as made,
          notify_socket(tmp_path) as notify):
        made.network("di-pnet")
        web = made.container("di-pweb", "di-pnet", restart="always")
        url = engine.url
        reason_prefix = f"docker:{url}: "
        engine.stop()  # dockdns starts while its engine is down

        with dockdns("--docker-host", url, "--hosts-file", hosts, "--upstream", upstream,
                     docker=True, env={"NOTIFY_SOCKET": notify.path}) as daemon:
            # 1. Unreachable from the start: alive, not ready, the reason in the body; it serves
            #    what it has (the hosts file) meanwhile; systemd has not been told READY=1.
            status, body = readyz(daemon)
            assert status == 503, body
            assert body.startswith(f"{reason_prefix}engine unreachable: "), body
            assert healthz(daemon) == (200, "ok\n")
            assert daemon.sees("files.test") == {"198.51.100.20"}
            samples = metrics(daemon)
            assert value(samples, "dockdns_docker_connected", engine=url) == 0
            assert ("dockdns_last_sync_timestamp_seconds",
                    frozenset({("engine", url)})) not in samples
            assert "READY=1" not in lines(notify.pending())

            # 2. The engine comes up: the first sync makes it ready, and only then READY=1.
            before_start = time.time()
            engine.start()
            wait_for(lambda: readyz(daemon) == (200, "ready\n"), message="ready after sync")
            ready = lines(notify.until("READY=1"))
            assert f"MAINPID={daemon.process.pid}" in ready
            first_ip = wait_for(lambda: web.running_ip("di-pnet"), message="di-pweb back")
            wait_for(lambda: daemon.sees("di-pweb") == {first_ip}, message="di-pweb answered")
            samples = metrics(daemon)
            assert value(samples, "dockdns_docker_connected", engine=url) == 1
            first_sync = value(samples, "dockdns_last_sync_timestamp_seconds", engine=url)
            assert first_sync >= before_start - 1  # the engine's sync, not some default

            # 3. Containers starting are engine events; the registry counts their names.
            events = value(samples, "dockdns_docker_events_total", engine=url)
            other = made.container("di-pother", "di-pnet", aliases=["di-palias"])
            other_ip = other.ip("di-pnet")
            wait_for(lambda: daemon.sees("di-palias") == {other_ip}, message="di-pother")
            samples = metrics(daemon)
            assert value(samples, "dockdns_docker_events_total", engine=url) > events
            assert value(samples, "dockdns_registry_names", source="docker") == \
                docker_names(made)
            assert value(samples, "dockdns_registry_names", source="hosts") == 1

            # 4. The engine stops: not ready (with the reason), alive, still answering the last
            #    registry.
            engine.stop()
            wait_for(lambda: readyz(daemon)[0] == 503, message="not ready once stopped")
            status, body = readyz(daemon)
            assert body.startswith(f"{reason_prefix}engine unreachable: "), body
            assert healthz(daemon) == (200, "ok\n")
            assert metrics(daemon)[("dockdns_docker_connected",
                                    frozenset({("engine", url)}))] == 0
            assert daemon.sees("di-palias") == {other_ip}
            assert daemon.sees("files.test") == {"198.51.100.20"}

            # 5. Back: ready again after a new sync, which prunes what did not come back.
            engine.start()
            wait_for(lambda: readyz(daemon) == (200, "ready\n"), message="ready again")
            samples = metrics(daemon)
            assert value(samples, "dockdns_docker_connected", engine=url) == 1
            assert value(samples, "dockdns_last_sync_timestamp_seconds", engine=url) > first_sync
            new_ip = wait_for(lambda: web.running_ip("di-pnet"), message="di-pweb restarted")
            wait_for(lambda: daemon.sees("di-pweb") == {new_ip}
                     and not daemon.sees("di-palias"), message="re-listed and pruned")

            # 6. SIGTERM: systemd hears STOPPING=1, and the daemon exits cleanly.
            daemon.signal(signal.SIGTERM)
            notify.until("STOPPING=1")
            assert daemon.process.wait(timeout=20) == 0
            assert lines(notify.seen).count("READY=1") == 1


def engine_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        pytest.skip(f"the engine is not behind a unix socket ({host})")
    return host.removeprefix("unix://") or "/var/run/docker.sock"


def test_not_ready_before_the_first_sync(tmp_path: Path, hosts: str, upstream: str) -> None:
    """An engine that takes connections but has not answered yet (a busy or wedged dockerd):
    dockdns serves after its bounded first-sync wait, is not ready until the listing arrives,
    and tells systemd READY=1 only then."""
    require_engine()
    relay = UnixRelay(tmp_path / "docker.sock", engine_socket())
    relay.hold()
    relay.start()
    try:
        with (lab("di-o", pool=SHARED_POOL) as made, notify_socket(tmp_path) as notify):
            made.network("di-onet")
            box = made.container("di-oweb", "di-onet")
            with dockdns("--docker-host", relay.url, "--hosts-file", hosts, "--upstream",
                         upstream, docker=True, env={"NOTIFY_SOCKET": notify.path}) as daemon:
                assert readyz(daemon) == (
                    503, f"docker:{relay.url}: first sync with the engine not done yet\n")
                assert healthz(daemon) == (200, "ok\n")
                assert daemon.sees("files.test") == {"198.51.100.20"}
                assert not daemon.sees("di-oweb")
                assert "READY=1" not in lines(notify.pending())
                relay.release()
                wait_for(lambda: readyz(daemon) == (200, "ready\n"), message="ready")
                assert "READY=1" in lines(notify.until("READY=1"))
                assert daemon.sees("di-oweb") == {box.ip("di-onet")}
    finally:
        relay.stop()
