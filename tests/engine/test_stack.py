"""deploy/swarm-stack.yml deployed with ``docker stack deploy`` on the single-node Swarm of the
test engine (tests/support/swarm.py), with the locally built image, and judged by Swarm's own
embedded DNS from a client container on an overlay network.

The stack's variables carry the test's own values: the image by ID with ``--resolve-image never``
(with a tag, each node's agent would ask a registry first), the listen address a free port of
docker_gwbridge's gateway (port 53 there may be another test's), the metrics port, and the only
upstream, a loopback dnsmasq. The stack's global ``dockdns-manager`` service then runs one task
on this node (a manager); ``dockdns-worker`` has no node to run on.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Sequence
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import docker
import pytest

from tests.support.daemon import REPO
from tests.support.engine import Box, Question, lab, wait_for
from tests.support.image import dockdns_image
from tests.support.net import addresses, free_port
from tests.support.swarm import SwarmLab, gwbridge_gateway
from tests.support.upstream import dnsmasq

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

STACK_FILE = REPO / "deploy" / "swarm-stack.yml"
POOL = "10.251.128.0/17"
TASK_SECONDS = 180.0
FORWARDED = ("dks-ext.example", "198.51.100.72")  # not under .test: dockdns answers that


def summary(reply: dns.message.Message | None) -> tuple[str, frozenset[tuple[str, str, str]]]:
    if reply is None:
        return ("no reply", frozenset())
    return (dns.rcode.to_text(reply.rcode()), frozenset(
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rdata.to_text())
        for rrset in reply.answer for rdata in rrset))


def stack_containers(client: docker.DockerClient, stack: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.api.containers(
        all=True, filters={"label": f"com.docker.stack.namespace={stack}"})
    return found


def test_stack_serves_swarm_names_like_swarm_dns() -> None:
    with lab("dks-", pool=POOL) as made:
        swarm = SwarmLab(made)
        client = made.client
        stack = f"dks{os.getpid()}"
        try:
            swarm.overlay("dks-ovl")
            box: Box = swarm.attach("dks-client", "dks-ovl")
            swarm.service("dks-web", ["dks-ovl"], replicas=2, aliases={"dks-ovl": ["dks-www"]})
            swarm.service("dks-rr", ["dks-ovl"], replicas=2, dnsrr=True)
            gateway = gwbridge_gateway(client)
            port = free_port(gateway)
            image = dockdns_image(client)
            with dnsmasq(f"--host-record={FORWARDED[0]},{FORWARDED[1]}") as upstream:
                env = {**os.environ, "DOCKDNS_IMAGE": image,
                       "DOCKDNS_LISTEN": f"{gateway}:{port}",
                       "DOCKDNS_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
                       "DOCKDNS_UPSTREAMS": upstream.address}
                done = subprocess.run(
                    ["docker", "stack", "deploy", "--resolve-image", "never",
                     "--compose-file", str(STACK_FILE), stack],
                    env=env, capture_output=True, text=True, timeout=300, check=False)
                assert done.returncode == 0, done.stderr
                swarm.wait_running("dks-web", 2)
                swarm.wait_running("dks-rr", 2)

                def ask(questions: Sequence[Question]) -> list[dns.message.Message | None]:
                    return made.ask(box, gateway, questions, port=port)

                wait_for(lambda: any(c.get("State") == "running"
                                     for c in stack_containers(client, stack)),
                         timeout=TASK_SECONDS, interval=1, message="the stack's dockdns task")
                questions = [Question("dks-web"), Question("dks-www"), Question("tasks.dks-web"),
                             Question("dks-web.dks-ovl"), Question("dks-rr"),
                             Question("tasks.dks-rr"), Question("dks-web", "AAAA")]
                last: list[str] = []

                def agree() -> bool:
                    nonlocal last
                    ours, theirs = ask(questions), swarm.ask_docker(box, questions)
                    last = [f"{q.name} {q.rdtype}: dockdns {summary(o)} != docker {summary(d)}"
                            for q, o, d in zip(questions, ours, theirs, strict=True)
                            if o is None or summary(o) != summary(d)]
                    return not last
                with contextlib.suppress(AssertionError):
                    wait_for(agree, timeout=TASK_SECONDS, interval=1.0, message="agreement")
                assert not last, "the stack's dockdns differs from Swarm's DNS:\n" + \
                    "\n".join(last)
                assert all(summary(r)[1] for r in ask(questions[:6])), "A questions answered"
                (forwarded,) = ask([Question(FORWARDED[0])])
                assert forwarded is not None and addresses(forwarded) == {FORWARDED[1]}
        finally:
            subprocess.run(["docker", "stack", "rm", stack], capture_output=True, timeout=120,
                           check=False)
            with contextlib.suppress(AssertionError):
                wait_for(lambda: not stack_containers(client, stack), timeout=60, interval=0.5,
                         message="the stack's containers gone")
            swarm.cleanup()
