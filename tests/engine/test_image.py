"""The dockdns image, built with ``deploy/image.py`` (``make image``) and run on the real engine
the two ways the README documents, judged by Docker's own 127.0.0.11 from client containers:

* a sidecar: ``--network container:APP``, answering on a 127.0.0.11-style loopback address of the
  app's namespace (127.0.0.12: Docker's own rules redirect 127.0.0.11:53 to its resolver), with
  ``--as-container APP``;
* the host's daemon: ``--network host`` with the engine's socket mounted read-only, listening on
  port 53 of a lab network's gateway, which an unprivileged user can bind only through the
  image's one capability.

Both run as the image's non-root user with ``--cap-drop ALL --cap-add NET_BIND_SERVICE``, and
both get a loopback (or lab-gateway) dnsmasq as their only upstream.
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.flags
import dns.message
import dns.rcode
import dns.reversename
import pytest

from tests.support.daemon import http_get
from tests.support.engine import Box, Lab, Question, lab, wait_for
from tests.support.image import (
    container_logs,
    dockdns_image,
    docker_gid,
    health,
    process_status,
    run_dockdns,
)
from tests.support.net import free_port
from tests.support.upstream import dnsmasq

pytestmark = pytest.mark.docker

POOL = "10.247.128.0/17"
# The image's whole point: small. Measured 74 MB with the locally made base (see README).
MAX_IMAGE_BYTES = 100_000_000
HARDENING = ["--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE"]
# The image checks every 30 s; the tests do not wait that long for the first verdict.
FAST_HEALTH = ["--health-interval", "1s", "--health-start-period", "0s"]
SIDECAR_ADDRESS = "127.0.0.12"
FORWARDED = ("dk-iext.example", "198.51.100.7")  # only the test upstream has it; not .test
CAP_NET_BIND_SERVICE = 1 << 10


@pytest.fixture(scope="module")
def made() -> Iterator[Lab]:
    with lab("dk-i", pool=POOL) as setup:
        setup.network("dk-ia")
        setup.network("dk-ib")
        setup.container("dk-iweb1", "dk-ia", aliases=["dk-iweb"], hostname="dk-ihost")
        setup.container("dk-iweb2", "dk-ia", aliases=["dk-iweb"])
        both = setup.container("dk-iboth", "dk-ia")
        setup.connect(both, "dk-ib", aliases=["dk-ibothb"])
        setup.container("dk-ionlyb", "dk-ib")
        yield setup


@pytest.fixture(scope="module")
def image(made: Lab) -> str:
    return dockdns_image(made.client)


def _view(reply: dns.message.Message | None) -> tuple[str, str, str, list[str]]:
    assert reply is not None, "no reply"
    answers = sorted(line for rrset in reply.answer for line in rrset.to_text().splitlines())
    question = " ".join(rrset.to_text() for rrset in reply.question)
    return (dns.rcode.to_text(reply.rcode()), dns.flags.to_text(reply.flags), question, answers)


def compare(made: Lab, client: Box, server: str, questions: list[Question]) -> None:
    theirs = made.ask_docker(client, questions)
    ours = made.ask(client, server, questions)
    for question, docker_reply, our_reply in zip(questions, theirs, ours, strict=True):
        assert _view(our_reply) == _view(docker_reply), question
        if question.rdtype == "A" and not question.name.startswith("dk-ionlyb"):
            assert our_reply is not None and our_reply.answer, question


def questions_for(made: Lab) -> list[Question]:
    web1, both = made.boxes["dk-iweb1"], made.boxes["dk-iboth"]
    ptr = dns.reversename.from_address(web1.ip("dk-ia")).to_text()
    return [Question("dk-iweb1"), Question("dk-iweb"), Question("dk-ihost"),
            Question(web1.short_id), Question("dk-iweb1.dk-ia"), Question("DK-IWeb1"),
            Question("dk-iboth"), Question("dk-iboth.dk-ia"), Question(both.short_id),
            Question(ptr, "PTR"), Question("dk-iweb1", "AAAA"), Question("dk-iweb1", "MX"),
            Question("dk-iweb", tcp=True)]


def assert_unprivileged(box: Box) -> None:
    """Not root, and nothing but CAP_NET_BIND_SERVICE, as the kernel sees the process."""
    status = process_status(box)
    assert status["Uid"].split() == ["65534"] * 4, status["Uid"]
    assert int(status["CapEff"], 16) == CAP_NET_BIND_SERVICE, status["CapEff"]
    assert int(status["CapBnd"], 16) == CAP_NET_BIND_SERVICE, status["CapBnd"]


def wait_healthy(box: Box) -> None:
    def verdict() -> bool:
        state = box.inspect()["State"]
        return (state.get("Health") or {}).get("Status") in ("healthy", "unhealthy") \
            or not state["Running"]
    wait_for(verdict, timeout=90, interval=0.5, message=f"a health verdict for {box.name}")
    assert health(box) == "healthy", container_logs(box)


def answered(made: Lab, client: Box, server: str, name: str) -> bool:
    (reply,) = made.ask(client, server, [Question(name)])
    return reply is not None and bool(reply.answer)


def test_image_is_small_and_unprivileged(made: Lab, image: str) -> None:
    data = made.client.api.inspect_image(image)
    assert data["Size"] < MAX_IMAGE_BYTES, data["Size"]
    assert data["Config"]["User"] == "65534:65534"
    assert "/readyz" in " ".join(data["Config"]["Healthcheck"]["Test"])


def test_sidecar_in_the_apps_namespace_matches_docker(made: Lab, image: str) -> None:
    app = made.container("dk-iapp", "dk-ia")
    gateway = made.networks["dk-ia"].gateway
    # The upstream on the lab network's gateway: the only address outside the namespace that
    # the sidecar can reach, and one of the test's own.
    with dnsmasq(f"--host-record={FORWARDED[0]},{FORWARDED[1]}", host=gateway) as upstream:
        sidecar = run_dockdns(
            made, "dk-isidecar", image,
            ["--network", f"container:{app.name}", *HARDENING, *FAST_HEALTH,
             "--group-add", docker_gid(), "-v", "/var/run/docker.sock:/var/run/docker.sock:ro"],
            ["--listen", f"{SIDECAR_ADDRESS}:53", "--as-container", app.name,
             "--upstream", upstream.address])
        wait_healthy(sidecar)
        assert_unprivileged(sidecar)
        compare(made, app, SIDECAR_ADDRESS, questions_for(made))
        # A name on a network the app is not on: Docker would forward it (so it is not asked
        # of Docker); the sidecar forwards it too, to the test's upstream, which refuses it.
        (reply,) = made.ask(app, SIDECAR_ADDRESS, [Question("dk-ionlyb")])
        assert reply is not None and (reply.rcode(), reply.answer) == (dns.rcode.REFUSED, [])
        (forwarded,) = made.ask(app, SIDECAR_ADDRESS, [Question(FORWARDED[0])])
        assert forwarded is not None
        assert [r.to_text() for rrset in forwarded.answer for r in rrset] == [FORWARDED[1]]
        assert FORWARDED[0] in upstream.log()


def test_host_daemon_with_the_socket_read_only_matches_docker(made: Lab, image: str) -> None:
    gateway_a = made.networks["dk-ia"].gateway
    gateway_b = made.networks["dk-ib"].gateway
    metrics = f"127.0.0.1:{free_port()}"
    with dnsmasq(f"--host-record={FORWARDED[0]},{FORWARDED[1]}") as upstream:
        daemon = run_dockdns(
            made, "dk-ihost-daemon", image,
            ["--network", "host", *HARDENING, *FAST_HEALTH, "--group-add", docker_gid(),
             "-v", "/var/run/docker.sock:/var/run/docker.sock:ro",
             "-e", f"DOCKDNS_METRICS_LISTEN={metrics}"],
            ["--listen", f"{gateway_a}:53", "--listen", f"{gateway_b}:53",
             "--upstream", upstream.address])
        wait_healthy(daemon)
        assert_unprivileged(daemon)
        # The image runs the compiled build (deploy/image.py puts the pure wheel beside it only
        # for a base with another Python).
        port = int(metrics.rpartition(":")[2])
        status, _, body = http_get(port, "/metrics")
        assert status == 200
        assert 'dockdns_build_info{build="compiled"' in body, body
        assert 'stale_modules="0"' in body
        mounts = daemon.inspect()["Mounts"]
        assert [(m["Destination"], m["RW"]) for m in mounts] == [("/var/run/docker.sock", False)]
        client_a = made.container("dk-iclienta", "dk-ia")
        made.connect(client_a, "dk-ib")
        client_b = made.container("dk-iclientb", "dk-ib")
        # The daemon learns of the clients from the engine's events; it answers their names
        # once it has them (the registry is not what is under test here, the image is).
        wait_for(lambda: answered(made, client_b, gateway_b, "dk-iclientb"), interval=0.5,
                 message="the daemon knows the new clients")
        compare(made, client_a, gateway_a, questions_for(made))
        on_b = [Question("dk-iboth"), Question("dk-ibothb"), Question("dk-iboth.dk-ib"),
                Question("dk-ionlyb"), Question("dk-iclientb")]
        compare(made, client_b, gateway_b, on_b)
        (forwarded,) = made.ask(client_a, gateway_a, [Question(FORWARDED[0])])
        assert forwarded is not None
        assert [r.to_text() for rrset in forwarded.answer for r in rrset] == [FORWARDED[1]]
