"""A new Swarm task is answered on its container's start, as Docker's resolver answers it, with no
engine call between the start and the answer; and a task with a health check (its image's
included) only once the check passes. On the test engine's single-node Swarm, with dockdns
reaching the engine through a counting proxy (tests/support/engine_proxy.py) that holds some
calls back:

* with every container inspect and every full task listing held back, a scale-up is still
  answered, and Docker's resolver gives the same addresses: whether the new container has a
  health check came from its task's spec and its image, read when it was created (an inspect
  of the container waits for its start, which it races);
* a task whose image (not its spec) has a health check is not answered when its container
  starts, only once it is healthy, as Swarm binds it in DNS only then.

Answers are asked from loopback and, for Docker's resolver, from a client container on the
overlay; the only upstream refuses everything, so nothing leaves the machine.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import dns.rcode
import docker.errors
import pytest

from tests.support.daemon import dockdns
from tests.support.engine import IMAGE, Question, require_engine, wait_for
from tests.support.engine_proxy import EngineProxy, Request
from tests.support.net import addresses, ask
from tests.support.swarm import SwarmLab, follows, overlay_lab

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

PREFIX = "swarmlag-"
NETWORK = f"{PREFIX}net"
POOL = "10.251.0.0/16"
NEVER = "3600"  # no periodic full re-read within a test
HEALTH_IMAGE = f"{PREFIX}health:busybox"


@pytest.fixture
def swarm() -> Iterator[SwarmLab]:
    with overlay_lab(PREFIX, POOL, NETWORK) as made:
        yield made


def container_inspect_or_full_listing(request: Request) -> bool:
    """What the Swarm source needed before a new task's start could count it: an inspect of the
    task's container (for its health check), and, once that timed out, the full re-read."""
    inspect = (request.path.startswith("/containers/") and request.path.endswith("/json")
               and request.path != "/containers/json")
    return inspect or (request.path == "/tasks" and "service" not in request.filters)


def test_a_scale_up_is_answered_with_container_inspects_held_back(
        proxy: EngineProxy, swarm: SwarmLab, upstream: str) -> None:
    swarm.service(f"{PREFIX}grow", [NETWORK], replicas=1)
    swarm.wait_running(f"{PREFIX}grow", 1)
    client = swarm.attach(f"{PREFIX}client", NETWORK)
    with dockdns("--docker-host", proxy.url, "--swarm-reconcile", NEVER, "--upstream", upstream,
                 docker=True) as server:
        follows(server, swarm, f"{PREFIX}grow", 1, NETWORK)
        proxy.hold(container_inspect_or_full_listing)
        try:
            swarm.scale(f"{PREFIX}grow", 2)
            two = follows(server, swarm, f"{PREFIX}grow", 2, NETWORK)
            # The same two Docker's resolver gives (it binds a task once its container started).
            reply = swarm.ask_docker(client, [Question(f"tasks.{PREFIX}grow")])[0]
            assert reply is not None and addresses(reply) == two
        finally:
            proxy.release()


@pytest.fixture(scope="module")
def health_image() -> Iterator[str]:
    """The test image with a HEALTHCHECK of its own (built here from the local image, no pull):
    healthy once /tmp/ok exists. Removed after the module's services and their tasks."""
    client = require_engine()
    base = client.images.get(IMAGE).id
    dockerfile = (f"FROM {base}\n"
                  "HEALTHCHECK --interval=1s --timeout=2s --retries=100000 "
                  'CMD ["/bin/sh", "-c", "test -e /tmp/ok"]\n')
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=HEALTH_IMAGE,
                                   pull=False, rm=True)
    assert (image.attrs["Config"].get("Healthcheck") or {}).get("Test")
    try:
        yield str(image.id)
    finally:
        for _ in range(40):
            try:
                client.images.remove(HEALTH_IMAGE)
                break
            except docker.errors.ImageNotFound:
                break
            except docker.errors.APIError:  # a task's container is still being removed
                time.sleep(0.5)


def test_a_task_whose_image_has_a_health_check_waits_for_it(
        proxy: EngineProxy, swarm: SwarmLab, upstream: str, health_image: str) -> None:
    with dockdns("--docker-host", proxy.url, "--swarm-reconcile", NEVER, "--upstream", upstream,
                 docker=True) as server:
        swarm.service(f"{PREFIX}checked", [NETWORK], image=health_image)

        def starting() -> dict[str, Any] | None:
            for task in swarm.tasks(f"{PREFIX}checked"):
                status = task.get("Status") or {}
                if status.get("State") == "starting" and (
                        status.get("ContainerStatus") or {}).get("ContainerID"):
                    return task
            return None
        task = wait_for(starting, timeout=180, interval=0.5,
                        message="the health-checked task's container running")
        # A service made after that container started: once dockdns answers it, the first
        # one's start event came and went (one stream, in order).
        swarm.service(f"{PREFIX}mark", [NETWORK])
        follows(server, swarm, f"{PREFIX}mark", 1, NETWORK)
        assert swarm.tasks(f"{PREFIX}checked")[0]["Status"]["State"] == "starting"
        reply = ask(server.host, server.port, f"tasks.{PREFIX}checked")
        assert not addresses(reply) and reply.rcode() != dns.rcode.NOERROR
        container = swarm.task_container(task)
        swarm.client.api.exec_start(swarm.client.api.exec_create(
            container["Id"], ["touch", "/tmp/ok"])["Id"])
        follows(server, swarm, f"{PREFIX}checked", 1, NETWORK)
