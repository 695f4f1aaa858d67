"""deploy/compose.yaml brought up with Debian's ``docker-compose``, exactly as the README says,
with the locally built image and the test's own names and addresses through the variables the
file reads. Both of its forms must answer:

* ``dockdns`` on the host's network, on a port of docker0's gateway: the ``app`` container on the
  default bridge gets ``web`` and ``web.docker`` (names Docker itself gives nobody there);
* ``dockdns-sidecar`` in ``app2``'s namespace, on 127.0.0.11:53 (free there: Docker runs no
  resolver on the default bridge): ``app2`` gets ``web`` too.

Both forward other names to the test's dnsmasq on docker0's gateway, and both turn healthy by the
image's own HEALTHCHECK. No Docker reference is asked: on the default bridge it has no names.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from tests.support.daemon import REPO
from tests.support.engine import IN_CI, Box, Lab, Question, _rootfs_tar, lab, wait_for
from tests.support.image import dockdns_image, docker_gid
from tests.support.net import addresses, free_port
from tests.support.upstream import dnsmasq

pytestmark = pytest.mark.docker

COMPOSE_FILE = REPO / "deploy" / "compose.yaml"
# The file's `web` is nginx; here a busybox whose default command keeps it running.
WEB_IMAGE = "dockdns-test:busybox-sleeper"
FORWARDED = ("dkc-ext.example", "198.51.100.71")  # not .test: dockdns answers that
# The image checks its health every 30 s (Compose cannot shorten that from outside).
HEALTHY_SECONDS = 120


def compose_command() -> list[str]:
    found = shutil.which("docker-compose")
    if found is None:
        reason = "docker-compose is missing (Debian package docker-compose, tests/setup.sh)"
        if IN_CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return [found]


def sleeper_image(client: docker.DockerClient) -> str:
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(WEB_IMAGE)
        return WEB_IMAGE
    repository, tag = WEB_IMAGE.split(":")
    client.api.import_image_from_data(_rootfs_tar(), repository=repository, tag=tag,
                                      changes=['CMD ["sleep", "3600"]'])
    return WEB_IMAGE


def bridge_gateway(client: docker.DockerClient) -> str:
    """docker0's address: the default bridge's gateway, which the engine does not list."""
    options = client.api.inspect_network("bridge").get("Options") or {}
    interface = options.get("com.docker.network.bridge.name", "docker0")
    done = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", interface],
                          capture_output=True, text=True, check=True)
    return done.stdout.split()[3].split("/")[0]


def container(client: docker.DockerClient, name: str) -> Box:
    return Box(name, client.api.inspect_container(name)["Id"], client)


def a_records(made: Lab, box: Box, server: str, name: str, port: int = 53) -> set[str]:
    (reply,) = made.ask(box, server, [Question(name)], port=port)
    return addresses(reply) if reply is not None else set()


@pytest.fixture
def made() -> Iterator[Lab]:
    with lab("dkc-") as setup:
        yield setup


def test_compose_file_serves_its_names(made: Lab) -> None:
    command = compose_command()
    client = made.client
    image = dockdns_image(client)
    gateway = bridge_gateway(client)
    port = free_port(gateway)
    tag = f"{os.getpid()}"
    names = {"WEB_NAME": f"dkc-web-{tag}", "APP_NAME": f"dkc-app-{tag}",
             "APP2_NAME": f"dkc-app2-{tag}"}
    with dnsmasq(f"--host-record={FORWARDED[0]},{FORWARDED[1]}", host=gateway) as upstream:
        env = {**os.environ, **names, "DOCKDNS_IMAGE": image, "WEB_IMAGE": sleeper_image(client),
               "APP_IMAGE": sleeper_image(client), "DOCKER_GID": docker_gid(),
               "DOCKDNS_UPSTREAM": upstream.address, "DOCKDNS_LISTEN": f"{gateway}:{port}",
               "DOCKDNS_METRICS_LISTEN": f"127.0.0.1:{free_port()}", "APP_DNS": gateway}
        compose = [*command, "--project-name", f"dkc{tag}", "--file", str(COMPOSE_FILE)]
        try:
            done = subprocess.run([*compose, "up", "-d"], env=env, capture_output=True,
                                  text=True, timeout=300, check=False)
            assert done.returncode == 0, done.stderr
            web, app, app2 = (container(client, names[key])
                              for key in ("WEB_NAME", "APP_NAME", "APP2_NAME"))
            web_ip = web.inspect()["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]

            # The host's dockdns, asked from the app on the default bridge.
            wait_for(lambda: a_records(made, app, gateway, names["WEB_NAME"], port) == {web_ip},
                     timeout=60, interval=0.5, message="web through the host's dockdns")
            assert a_records(made, app, gateway, f"{names['WEB_NAME']}.docker", port) == {web_ip}
            assert a_records(made, app, gateway, FORWARDED[0], port) == {FORWARDED[1]}

            # The sidecar, asked on the app's own 127.0.0.11.
            wait_for(lambda: a_records(made, app2, "127.0.0.11", names["WEB_NAME"]) == {web_ip},
                     timeout=60, interval=0.5, message="web through the sidecar")
            app2_ip = app2.inspect()["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
            assert a_records(made, app2, "127.0.0.11", names["APP2_NAME"]) == {app2_ip}
            assert a_records(made, app2, "127.0.0.11", FORWARDED[0]) == {FORWARDED[1]}

            # Both turn healthy by the image's own check, with the file's environment.
            ids = subprocess.run([*compose, "ps", "-q", "dockdns", "dockdns-sidecar"], env=env,
                                 capture_output=True, text=True, check=True).stdout.split()
            assert len(ids) == 2
            for container_id in ids:
                wait_for(lambda cid=container_id: client.api.inspect_container(cid)["State"]
                         ["Health"]["Status"] != "starting", timeout=HEALTHY_SECONDS,
                         interval=1, message="a health verdict")
                state = client.api.inspect_container(container_id)["State"]
                assert state["Health"]["Status"] == "healthy", state["Health"]
        finally:
            subprocess.run([*compose, "down", "--timeout", "1"], env=env, capture_output=True,
                           timeout=300, check=False)
