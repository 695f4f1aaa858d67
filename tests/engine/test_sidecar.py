"""Sidecar mode (``--as-container``) against the real engine, judged by Docker's own resolver.

A real sidecar shares the app container's network namespace, which needs an image with Python;
the test image is busybox. So dockdns runs on the host with ``--as-container APP`` on a loopback
address: loopback clients then get APP's view, the same code path a sidecar's loopback clients
take. The reference is Docker's 127.0.0.11 asked from inside APP, for names APP knows (anything
else Docker would forward off the machine); names on networks APP is not attached to must not be
answered from the registry.
"""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.reversename
import pytest

from tests.support.daemon import RunningDaemon, dockdns, http_get
from tests.support.engine import Box, Lab, Question, lab, wait_for
from tests.support.net import ask
from tests.support.scrape import scrape, value

pytestmark = pytest.mark.docker

POOL = "10.248.0.0/17"


def readyz(daemon: RunningDaemon) -> tuple[int, str]:
    assert daemon.metrics_port is not None
    status, _, body = http_get(daemon.metrics_port, "/readyz")
    return status, body


def answer_text(reply: dns.message.Message | None) -> tuple[int, list[str]]:
    """The rcode and the answer section, record by record, order aside."""
    assert reply is not None
    return reply.rcode(), sorted(f"{rrset.name} {rrset.ttl} {rrset.rdtype} {rdata}"
                                 for rrset in reply.answer for rdata in rrset)


def compare(made: Lab, app: Box, daemon: RunningDaemon, questions: list[Question]) -> None:
    docker = made.ask_docker(app, questions)
    for question, theirs in zip(questions, docker, strict=True):
        ours = ask(daemon.host, daemon.port, question.name, question.rdtype)
        assert answer_text(ours) == answer_text(theirs), (question, ours, theirs)
        assert ours.answer or question.rdtype != "A", question  # the A questions have answers


def docker_names(daemon: RunningDaemon) -> float:
    assert daemon.metrics_port is not None
    return value(scrape(daemon.metrics_port), "dockdns_registry_names", source="docker")


def test_loopback_sees_what_the_app_container_sees(upstream: str) -> None:
    with lab("di-s", pool=POOL) as made:
        for network in ("di-sa", "di-sb", "di-sc"):
            made.network(network)
        web = made.container("di-sweb", "di-sa", aliases=["di-swww"])
        made.container("di-sdb", "di-sc")
        other = made.container("di-sother", "di-sb")
        with dockdns("--as-container", "di-sapp", "--upstream", upstream,
                     docker=True) as daemon:
            # No such container yet: not ready, and loopback sees no network at all.
            status, body = readyz(daemon)
            assert (status, body) == (503, "sidecar: container di-sapp is not in the registry "
                                            "(yet): loopback clients see no network until it is\n")
            assert daemon.sees("di-sweb") == set()

            # Created but not running: still not ready. (A container started afterwards is in
            # the registry, so the engine's news up to then has been taken in.)
            app = made.container("di-sapp", "di-sa", start=False)
            made.connect(app, "di-sc")
            names = docker_names(daemon)
            made.container("di-smark", "di-sb")
            wait_for(lambda: docker_names(daemon) > names, message="di-smark registered")
            assert readyz(daemon)[0] == 503

            made.client.api.start(app.id)
            wait_for(lambda: readyz(daemon) == (200, "ready\n"), message="ready once started")
            wait_for(lambda: daemon.sees("di-sweb") == {web.ip("di-sa")},
                     message="di-sweb through the sidecar view")

            web_ptr = dns.reversename.from_address(web.ip("di-sa")).to_text()
            known = [Question("di-sweb"), Question("di-swww"), Question("DI-SWeb"),
                     Question("di-sweb.di-sa"), Question("di-sdb"), Question("di-sdb.di-sc"),
                     Question("di-sapp"), Question(web.short_id), Question(web_ptr, "PTR"),
                     Question("di-sweb", "AAAA"), Question("di-sweb", "MX")]
            compare(made, app, daemon, known)

            # di-sother and di-smark are on di-sb, which di-sapp is not attached to: Docker in
            # di-sapp would forward them; dockdns does too (the loopback upstream refuses).
            for name in ("di-sother", "di-smark", "di-sother.di-sb"):
                reply = ask(daemon.host, daemon.port, name)
                assert (reply.rcode(), reply.answer) == (dns.rcode.REFUSED, []), name

            # Attached to di-sb as well: the view follows, still exactly Docker's.
            made.connect(app, "di-sb")
            wait_for(lambda: daemon.sees("di-sother") == {other.ip("di-sb")},
                     message="di-sother once di-sapp is on di-sb")
            compare(made, app, daemon, [Question("di-sother"), Question("di-sother.di-sb"),
                                        *known])
