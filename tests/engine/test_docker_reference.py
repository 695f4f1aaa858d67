"""dockdns against Docker's own embedded DNS, question for question, from inside containers.

A lab of user-defined networks and containers on the real engine; dockdns listens on port 53 of
each network's gateway, so a query from a container arrives with the container's own address, as
at 127.0.0.11. From a client container's network namespace the same questions go to Docker's
127.0.0.11 and to dockdns, and the replies must agree: rcode, flags, question (case included) and
the answer section (addresses compared as sets: both servers shuffle them).

Only names Docker answers itself are asked of it (``Lab.ask_docker`` refuses others).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.rcode
import dns.reversename
import pytest

from tests.support.daemon import RunningDaemon, dockdns
from tests.support.engine import Box, Lab, Question, lab
from tests.support.net import free_port

pytestmark = pytest.mark.docker


@dataclass
class Setup:
    lab: Lab
    daemon: RunningDaemon
    gateways: dict[str, str]  # network -> address dockdns listens on (port 53)


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    with lab("dd-r") as made:
        made.network("dd-ra")
        made.network("dd-rb")
        made.network("dd-r6", ipv6=True)
        made.container("dd-rweb1", "dd-ra", aliases=["dd-rweb"], hostname="dd-rhost")
        made.container("dd-rweb2", "dd-ra", aliases=["dd-rweb"])
        both = made.container("dd-rboth", "dd-ra", aliases=["dd-rbotha"])
        made.connect(both, "dd-rb", aliases=["dd-rbothb"])
        made.container("dd-rMixed", "dd-ra")
        made.container("dd-rv6", "dd-r6", aliases=["dd-rv6alias"])
        client = made.container("dd-rclient", "dd-ra")
        made.connect(client, "dd-rb")
        made.container("dd-rclientb", "dd-rb")
        made.container("dd-rclient6", "dd-r6")
        # An internal network whose name sorts first: Docker still looks there last.
        made.network("dd-r0int", internal=True)
        dual = made.container("dd-rdual", "dd-r0int")
        made.connect(dual, "dd-rb")
        client_ib = made.container("dd-rclientib", "dd-r0int")
        made.connect(client_ib, "dd-rb")
        gateways = {name: net.gateway for name, net in made.networks.items()
                    if not made.networks[name].internal}
        listen = [arg for gw in list(gateways.values())[1:] for arg in ("--listen", f"{gw}:53")]
        upstream = f"127.0.0.1:{free_port()}"  # nothing listens there: nothing leaves the host
        with dockdns(*listen, "--upstream", upstream, host=gateways["dd-ra"], port=53,
                     docker=True) as daemon:
            yield Setup(made, daemon, gateways)


def _view(reply: dns.message.Message | None) -> tuple[str, int, str, list[str]]:
    """What must agree: rcode, header flags, the question as sent back, the answer section."""
    assert reply is not None, "no reply"
    answers = sorted(line for rrset in reply.answer for line in rrset.to_text().splitlines())
    question = " ".join(rrset.to_text() for rrset in reply.question)
    return dns.rcode.to_text(reply.rcode()), reply.flags, question, answers


def _compare(setup: Setup, client: Box, server: str, questions: list[Question]) -> None:
    docker_replies = setup.lab.ask_docker(client, questions)
    ours = setup.lab.ask(client, server, questions)
    for question, theirs, mine in zip(questions, docker_replies, ours, strict=True):
        expected = _view(theirs)
        got = _view(mine)
        assert got == expected, (
            f"{question}: Docker {expected} vs dockdns {got} "
            f"(flags {dns.flags.to_text(expected[1])} / {dns.flags.to_text(got[1])})")


def _ptr(address: str) -> str:
    return dns.reversename.from_address(address).to_text()


def test_names_on_one_network_match_docker(setup: Setup) -> None:
    made = setup.lab
    web1 = made.boxes["dd-rweb1"]
    client = made.boxes["dd-rclient"]
    questions = [
        Question("dd-rweb1"),  # container name
        Question("dd-rweb"),  # network alias held by two containers
        Question("dd-rhost"),  # hostname
        Question(web1.short_id),  # 12-character ID
        Question("dd-rweb1.dd-ra"),  # name.network
        Question("dd-rweb.dd-ra"),  # alias.network
        Question("dd-rweb1", "AAAA"),  # IPv4-only network: NOERROR, empty
        Question("dd-rweb1", "MX"),  # known name, other type: NOERROR, empty
        Question("DD-RWeb1"),  # mixed case, echoed
        Question("dd-rmixed"),  # a container named in mixed case, asked in lower case
        Question("dd-rMIXED.dd-ra"),  # (Docker matches the network part only in its case)
        Question(_ptr(web1.ip("dd-ra")), "PTR"),
        Question(_ptr(made.boxes["dd-rMixed"].ip("dd-ra")), "PTR"),  # case of the name kept
        Question("dd-rweb1", tcp=True),
        Question("dd-rweb", tcp=True),
    ]
    _compare(setup, client, setup.gateways["dd-ra"], questions)


def test_container_on_two_networks_matches_docker(setup: Setup) -> None:
    made = setup.lab
    both = made.boxes["dd-rboth"]
    questions = [
        Question("dd-rboth"),
        Question("dd-rboth.dd-ra"),
        Question("dd-rboth.dd-rb"),
        Question("dd-rbotha"),
        Question("dd-rbothb"),
        Question("dd-rbothb.dd-rb"),
        Question(both.short_id),
        Question(_ptr(both.ip("dd-ra")), "PTR"),
        Question(_ptr(both.ip("dd-rb")), "PTR"),
    ]
    # A client on both networks, and one on each: every one sees only its own networks.
    _compare(setup, made.boxes["dd-rclient"], setup.gateways["dd-ra"], questions)
    on_b = [q for q in questions if "dd-ra" not in q.name and q.name != "dd-rbotha"
            and q.name != _ptr(both.ip("dd-ra"))]
    _compare(setup, made.boxes["dd-rclientb"], setup.gateways["dd-rb"], on_b)


def test_ipv6_network_matches_docker(setup: Setup) -> None:
    made = setup.lab
    v6 = made.boxes["dd-rv6"]
    questions = [
        Question("dd-rv6"),
        Question("dd-rv6", "AAAA"),
        Question("dd-rv6alias", "AAAA"),
        Question("dd-rv6.dd-r6", "AAAA"),
        Question(_ptr(v6.ip("dd-r6")), "PTR"),
        Question(_ptr(v6.ip6("dd-r6")), "PTR"),
    ]
    _compare(setup, made.boxes["dd-rclient6"], setup.gateways["dd-r6"], questions)


def test_internal_network_looked_up_last_as_docker(setup: Setup) -> None:
    made = setup.lab
    dual = made.boxes["dd-rdual"]
    questions = [
        Question("dd-rdual"),
        Question("dd-rdual.dd-r0int"),
        Question("dd-rdual.dd-rb"),
        Question(_ptr(dual.ip("dd-r0int")), "PTR"),
        Question(_ptr(dual.ip("dd-rb")), "PTR"),
    ]
    _compare(setup, made.boxes["dd-rclientib"], setup.gateways["dd-rb"], questions)
