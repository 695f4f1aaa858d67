"""``dockdns check`` and ``serve`` agree on a default-bridge name with --default-bridge-names,
against the real engine (tests/integration/test_check_agrees.py has the paths that need none):
check used to build its views without that flag and said the name was not there."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.test_check_agrees import served
from tests.integration.test_config import run
from tests.support.daemon import dockdns
from tests.support.engine import Lab, lab
from tests.support.net import ask
from tests.support.quiet_upstream import answering_upstream

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def made() -> Iterator[Lab]:
    with lab("ca-b", pool="10.247.0.0/17") as created:
        created.container("ca-bweb", None)  # Docker's default bridge: no names from Docker
        yield created


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with answering_upstream({"ext.test": "198.51.100.7"}) as address:
        yield address


@pytest.mark.parametrize("names", [True, False])
def test_a_default_bridge_name(made: Lab, upstream: str, names: bool) -> None:
    web_ip = made.boxes["ca-bweb"].ip("bridge")
    flags = ["--upstream", upstream, "--no-special-names", "--default-bridge-names" if names
             else "--no-default-bridge-names"]
    with dockdns(*flags, docker=True) as daemon:
        rcode, answers = served(ask(daemon.host, daemon.port, "ca-bweb"))
    done = run("check", "ca-bweb", *flags)
    lines = done.stdout.splitlines()
    checked = {line.split()[-1] for line in lines[1:] if line.startswith("  ")
               and line.strip() != "(no records)"}
    assert (lines[0].rsplit(": ", 1)[1], checked) == (rcode, answers), done.stdout
    if names:
        assert answers == {web_ip}
    else:
        assert web_ip not in answers
