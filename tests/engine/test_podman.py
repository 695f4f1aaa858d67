"""dockdns on Podman's Docker-compatible API (``--docker-host unix://.../podman.sock``), compared
with aardvark-dns, Podman's own resolver at each network's gateway, as Docker's 127.0.0.11 is the
reference for Docker.

What differs from Docker and is handled in discovery/docker/: Podman's default network is called
"bridge" with no options (no names there, as aardvark gives none); its network connect and
disconnect events name the container, not the network; it reports no event when a network is
made; its "died" and "remove" events are Docker's "die" and "destroy"; and aardvark answers every
name under ``dns.podman`` too. aardvark is asked only names it holds: like Docker's resolver it
forwards anything else to the machine's resolver. Its PTR answers are not compared (Podman 4.3's
aardvark answers with the root as the owner and every name of the container); dockdns answers
PTR as Docker does.
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.message
import dns.rcode
import dns.reversename
import pytest

from tests.support.daemon import RunningDaemon, dockdns
from tests.support.engine import Box, Lab, Question, wait_for
from tests.support.net import addresses, ask, free_port
from tests.support.podman import Podman, podman_service
from tests.support.quiet_upstream import refusing_upstream

pytestmark = pytest.mark.docker

P = "host-pm-"


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    with podman_service() as service:
        yield service


@pytest.fixture
def made(podman: Podman) -> Iterator[Lab]:
    created = Lab(podman.client, P, pool="10.245.0.0/16", others=podman.others)
    try:
        a, b = created.network(f"{P}a"), created.network(f"{P}b")
        created.container(f"{P}web", a.name, aliases=[f"{P}alias"])
        both = created.container(f"{P}both", a.name)
        created.connect(both, b.name, aliases=[f"{P}balias"])
        created.container(f"{P}cli-a", a.name)
        created.container(f"{P}cli-b", b.name)
        yield created
    finally:
        created.cleanup()


@pytest.fixture
def served(made: Lab, podman: Podman) -> Iterator[RunningDaemon]:
    a, b = made.networks[f"{P}a"], made.networks[f"{P}b"]
    # aardvark holds port 53 of each gateway: dockdns takes another port there.
    port = free_port(a.gateway)
    with refusing_upstream() as upstream, dockdns(
            "--docker-host", podman.url, "--upstream", upstream,
            "--listen", f"{b.gateway}:{port}", host=a.gateway, port=port, docker=True) as daemon:
        wait_for(lambda: daemon.sees(f"{P}web") and daemon.sees(f"{P}balias"),
                 message="first sync with Podman")
        yield daemon


def outcome(reply: dns.message.Message | None) -> tuple[str, set[str]] | None:
    if reply is None:
        return None
    return dns.rcode.to_text(reply.rcode()), addresses(reply)


def compare(made: Lab, client: Box, gateway: str, port: int,
            questions: list[Question]) -> list[tuple[str, tuple[str, set[str]] | None]]:
    aardvark = made.ask(client, gateway, questions)  # names it holds only (see the docstring)
    ours = made.ask(client, gateway, questions, port=port)
    differences = [(q.name, outcome(theirs)) for q, theirs, mine in zip(questions, aardvark, ours,
                                                                          strict=True)
                   if outcome(theirs) != outcome(mine)]
    unanswered = [q.name for q, r in zip(questions, aardvark, strict=True) if r is None]
    assert not unanswered, f"aardvark did not answer {unanswered}"
    return differences


def test_names_answer_as_aardvark_answers_them(made: Lab, served: RunningDaemon) -> None:
    a, b = made.networks[f"{P}a"], made.networks[f"{P}b"]
    web, both = made.boxes[f"{P}web"], made.boxes[f"{P}both"]
    on_a = [Question(name) for name in (
        f"{P}web", f"{P}web.dns.podman", f"{P}alias", f"{P}alias.dns.podman", web.short_id,
        f"{web.short_id}.dns.podman", f"{P}both", f"{P}both.dns.podman", f"{P}WEB")]
    assert compare(made, made.boxes[f"{P}cli-a"], a.gateway, served.port, on_a) == []
    on_b = [Question(name) for name in (f"{P}both", f"{P}balias", f"{P}balias.dns.podman",
                                        f"{P}both.dns.podman")]
    assert compare(made, made.boxes[f"{P}cli-b"], b.gateway, served.port, on_b) == []
    # Not vacuous: those are the containers' addresses on each network.
    reply = made.ask(made.boxes[f"{P}cli-b"], b.gateway, [Question(f"{P}balias.dns.podman")],
                     port=served.port)[0]
    assert reply is not None and addresses(reply) == {both.ip(b.name)}
    reply = made.ask(made.boxes[f"{P}cli-a"], a.gateway, [Question(f"{P}alias")],
                     port=served.port)[0]
    assert reply is not None and addresses(reply) == {web.ip(a.name)}
    # AAAA of a name with only IPv4 addresses: NOERROR, empty, as Docker answers. (Not asked of
    # aardvark, which may forward what it has no record of; nor TCP, which aardvark 1.4 lacks.)
    reply = made.ask(made.boxes[f"{P}cli-a"], a.gateway, [Question(f"{P}web", "AAAA")],
                     port=served.port)[0]
    assert reply is not None and reply.rcode() == dns.rcode.NOERROR and not reply.answer
    # aardvark matches ``dns.podman`` only in lower case (it would forward the rest, so it is
    # not asked); dockdns matches names in any case (RFC 4343), over TCP as well.
    reply = made.ask(made.boxes[f"{P}cli-a"], a.gateway,
                     [Question(f"{P}Alias.DNS.podman", tcp=True)], port=served.port)[0]
    assert reply is not None and addresses(reply) == {web.ip(a.name)}


def test_clients_see_only_their_networks_and_ptr_is_dockers(made: Lab,
                                                            served: RunningDaemon) -> None:
    b = made.networks[f"{P}b"]
    web = made.boxes[f"{P}web"]
    # web is on a only: a client on b does not see it (dockdns forwards it: REFUSED upstream).
    reply = made.ask(made.boxes[f"{P}cli-b"], b.gateway, [Question(f"{P}web")],
                     port=served.port)[0]
    assert reply is not None and reply.rcode() == dns.rcode.REFUSED and not addresses(reply)
    ptr = ask(served.host, served.port,
              dns.reversename.from_address(web.ip(f"{P}a")).to_text(), "PTR")
    assert [rdata.to_text() for rrset in ptr.answer for rdata in rrset] == [f"{P}web.{P}a."]


def test_events_keep_names_current(made: Lab, served: RunningDaemon) -> None:
    a, b = made.networks[f"{P}a"], made.networks[f"{P}b"]
    late = made.container(f"{P}late", a.name, aliases=[f"{P}late-alias"])
    wait_for(lambda: served.sees(f"{P}late-alias.dns.podman") == {late.ip(a.name)},
             message="started container answered")
    # Podman's connect event names the container: its new alias answers on b.
    made.connect(late, b.name, aliases=[f"{P}late-b"])
    client_b = made.boxes[f"{P}cli-b"]

    def seen_from_b(name: str) -> set[str]:
        reply = made.ask(client_b, b.gateway, [Question(name)], port=served.port)[0]
        return addresses(reply) if reply is not None and reply.rcode() == 0 else set()

    wait_for(lambda: seen_from_b(f"{P}late-b") == {late.ip(b.name)}, message="connect")
    made.client.api.disconnect_container_from_network(late.id, b.name)
    wait_for(lambda: not seen_from_b(f"{P}late-b"), message="disconnect")
    # A network made after dockdns listed them (Podman reports no event for that), with a
    # container on it.
    c = made.network(f"{P}c")
    newer = made.container(f"{P}newer", c.name)
    wait_for(lambda: served.sees(f"{P}newer") == {newer.ip(c.name)}, message="new network")
    # Stopped (Podman's "died"), then removed (its "remove").
    made.client.api.stop(late.id, timeout=0)
    wait_for(lambda: not served.sees(f"{P}late"), message="stopped container gone")
    made.remove(newer)
    wait_for(lambda: not served.sees(f"{P}newer"), message="removed container gone")


def test_default_network_members_have_no_names(made: Lab, podman: Podman) -> None:
    # Podman's default network ("podman"; "bridge" to its Docker API) has DNS off in aardvark.
    loner = made.container(f"{P}loner", None)
    address = loner.running_ip("podman")  # the endpoint's name for it
    assert address
    with refusing_upstream() as upstream:
        for flags, expected in (((), set()), (("--default-bridge-names",), {address})):
            with dockdns("--docker-host", podman.url, "--upstream", upstream, *flags,
                         docker=True) as daemon:
                # The first sync, which lists the loner too, is done once web answers.
                wait_for(lambda d=daemon: d.sees(f"{P}web"), message="first sync")
                assert daemon.sees(f"{P}loner") == expected
