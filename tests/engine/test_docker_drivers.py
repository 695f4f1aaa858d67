"""macvlan and ipvlan networks are served like bridges (Docker's resolver serves them all).

Their parent is an interface the test creates (one end of a veth pair). A container on such a
network cannot reach its host through it, so dockdns is asked from the host (which sees every
user-defined network) and Docker's 127.0.0.11 from a client on the network: the answers must be
the same. ipvlan is skipped where the kernel lacks it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import dns.message
import dns.reversename
import pytest

from tests.support.daemon import dockdns
from tests.support.engine import Question, lab
from tests.support.net import ask
from tests.support.quiet_upstream import refusing_upstream

pytestmark = pytest.mark.docker


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def parent() -> Iterator[str]:
    """A parent interface of the test's own: one end of a veth pair (the kernels here have no
    dummy interface type; a veth end serves as well)."""
    name = f"dd-vp{os.getpid() % 100000}"
    made = _ip("link", "add", name, "type", "veth", "peer", "name", f"{name}q")
    if made.returncode != 0:
        pytest.fail(f"cannot create a veth pair: {made.stderr.strip()}")
    _ip("link", "set", name, "up")
    _ip("link", "set", f"{name}q", "up")
    try:
        yield name
    finally:
        _ip("link", "del", name)


def _kernel_has(driver: str, parent: str) -> bool:
    probe = f"dd-probe{os.getpid() % 10000}"
    made = _ip("link", "add", "link", parent, "name", probe, "type", driver)
    _ip("link", "del", probe)
    return made.returncode == 0


def _lines(reply: dns.message.Message | None) -> tuple[int, list[str]]:
    assert reply is not None
    return reply.rcode(), sorted(line for rrset in reply.answer
                                 for line in rrset.to_text().splitlines())


@pytest.mark.parametrize("driver", ["macvlan", "ipvlan"])
def test_driver_served_like_docker(driver: str, parent: str) -> None:
    if not _kernel_has(driver, parent):
        pytest.skip(f"this kernel has no {driver} support")
    with lab("dd-v") as made, refusing_upstream() as upstream:
        network = f"dd-v{driver}"
        made.network(network, driver=driver, options={"parent": parent})
        target = made.container(f"dd-v{driver}1", network, aliases=[f"dd-v{driver}alias"])
        client = made.container(f"dd-v{driver}client", network)
        ptr = dns.reversename.from_address(target.ip(network)).to_text()
        questions = [Question(target.name), Question(f"{target.name}.{network}"),
                     Question(f"dd-v{driver}alias"), Question(target.short_id),
                     Question(target.name, "AAAA"), Question(ptr, "PTR")]
        docker_replies = made.ask_docker(client, questions)
        with dockdns("--upstream", upstream, docker=True) as daemon:
            for question, theirs in zip(questions, docker_replies, strict=True):
                ours = ask(daemon.host, daemon.port, question.name, question.rdtype)
                assert _lines(ours) == _lines(theirs), question
                assert _lines(ours)[1] or question.rdtype == "AAAA", question

