"""The ``dockdns`` command in-process: ``config`` prints every setting and its origin, ``check``
explains a hosts-file name and exits 1 for one without records, ``registry --json`` lists the
names, and a bad setting or --from is one line on stderr and exit 2. Nothing is forwarded
anywhere but a loopback fault server."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.daemon.cli import EXIT_CONFIG, EXIT_NO_ANSWER, main
from tests.support.upstream import FaultServer


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("DOCKDNS_"):
            monkeypatch.delenv(key)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers  # main() configures logging for the process it runs in
    root.setLevel(level)


@pytest.fixture
def sources(tmp_path: Path) -> Iterator[list[str]]:
    hosts = tmp_path / "hosts"
    hosts.write_text("10.1.2.3 web1 Web-Alias\n")
    with FaultServer(zone="cli.test") as upstream:
        yield ["--hosts-file", str(hosts), "--no-docker", "--no-swarm",
               "--upstream", f"{upstream.host}:{upstream.port}"]


def test_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--ttl", "30", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["settings"]["ttl"] == 30 and printed["origins"]["ttl"] == "command line"
    assert printed["origins"]["domain"] == "default"


def test_bad_settings_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--ttl", "-1"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dockdns: invalid setting 'ttl'")
    assert main(["check", "web1", "--from", "nowhere", "--no-docker", "--no-swarm"]) == \
        EXIT_CONFIG
    assert capsys.readouterr().err == "dockdns: --from 'nowhere' is not an IP address\n"
    assert main(["check", "web1", "NOSUCHTYPE", "--no-docker", "--no-swarm",
                 "--upstream", "127.0.0.1:9"]) == EXIT_CONFIG
    assert capsys.readouterr().err.count("\n") == 1


def test_check(sources: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "web-alias", *sources]) == 0
    out = capsys.readouterr().out
    assert "10.1.2.3" in out and "hosts" in out.lower()
    # A name under the upstream's zone that it does not hold: NXDOMAIN, no records, exit 1.
    assert main(["check", "nope.cli.test", *sources]) == EXIT_NO_ANSWER
    assert "NXDOMAIN" in capsys.readouterr().out


def test_registry(sources: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["registry", "--json", *sources]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert "web1" in json.dumps(listing) and "web-alias" in json.dumps(listing)
