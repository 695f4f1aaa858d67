"""`dockdns check` and `dockdns registry` through the real CLI against the real engine.

One config for every command (the shared engine, a hosts file, a dnsmasq on loopback as the
upstream), as an operator would run them on a Docker host: a container name is explained with its
container and network, a client container's view with the networks it sees, a name on a network
it does not see as not visible to it, a hosts-file name with its line, a name the registry does
not hold as forwarded. And with the engine out of reach: one line saying so, and the rest still
explained.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_config import run
from tests.support.engine import Lab, lab
from tests.support.quiet_upstream import answering_upstream

pytestmark = pytest.mark.docker

POOL = "10.248.0.0/17"


@pytest.fixture(scope="module")
def made() -> Iterator[Lab]:
    with lab("di-c", pool=POOL) as created:
        created.network("di-ca")
        created.network("di-cb")
        created.container("di-cweb", "di-ca", aliases=["di-cwww"])
        created.container("di-cdb", "di-cb")
        created.container("di-capp", "di-ca")
        yield created


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with answering_upstream({"ext.test": "198.51.100.7"}) as address:
        yield address


@pytest.fixture
def settings(tmp_path: Path, upstream: str) -> list[str]:
    hosts = tmp_path / "hosts"
    hosts.write_text("# extra names\n198.51.100.20 files.test\n")
    # The upstream serves ext.test: .test is a special-use name dockdns answers unless told not to.
    return ["--hosts-file", str(hosts), "--upstream", upstream, "--no-special-names"]


def test_check_explains_container_hosts_and_forwarded_names(made: Lab, settings: list[str],
                                                            upstream: str) -> None:
    web = made.boxes["di-cweb"]
    web_ip = web.ip("di-ca")
    engine = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    done = run("check", "di-cweb", *settings)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "di-cweb A asked by 127.0.0.1: NOERROR"
    assert lines[1].split() == ["di-cweb.", "600", "IN", "A", web_ip]
    assert lines[2] == "from: found on network di-ca"
    assert lines[3] == (f"from: docker:{engine} container di-cweb ({web.short_id}), visible on "
                        "network di-ca")

    # An alias and Docker's name.network form come from the same container.
    alias = run("check", "di-cwww.di-ca", *settings)
    assert alias.returncode == 0, alias.stderr
    assert alias.stdout.splitlines()[1].split()[-1] == web_ip
    assert f"container di-cweb ({web.short_id})" in alias.stdout

    # The same run: a hosts-file name with its line, a forwarded name with its upstream.
    hosts = run("check", "files.test", *settings)
    assert hosts.returncode == 0, hosts.stderr
    assert hosts.stdout.splitlines()[1].split()[-1] == "198.51.100.20"
    assert hosts.stdout.splitlines()[2].endswith(
        ':2 "198.51.100.20 files.test", visible on every network')
    forwarded = run("check", "ext.test", *settings)
    assert forwarded.returncode == 0, forwarded.stderr
    lines = forwarded.stdout.splitlines()
    assert lines[1].split()[-1] == "198.51.100.7"
    assert lines[2:] == [f"from: forwarded to {upstream} (not in the registry)"]
    # No engine problem to report in any of them.
    assert done.stderr == alias.stderr == hosts.stderr == forwarded.stderr == ""


def test_check_from_a_container_shows_its_networks(made: Lab, settings: list[str],
                                                   upstream: str) -> None:
    app_ip = made.boxes["di-capp"].ip("di-ca")
    web_ip = made.boxes["di-cweb"].ip("di-ca")

    sees = run("check", "di-cweb", "--from", app_ip, *settings)
    assert sees.returncode == 0, sees.stderr
    lines = sees.stdout.splitlines()
    assert lines[0] == f"di-cweb A asked by {app_ip}: NOERROR"
    assert lines[1] == ("client: container di-capp, attached to di-ca; networks di-ca (in lookup "
                        "order); other names are forwarded")
    assert lines[2].split()[-1] == web_ip

    # di-cdb is on di-cb: not visible from di-capp, so it goes upstream (which refuses it).
    hidden = run("check", "di-cdb", "--from", app_ip, *settings)
    assert hidden.returncode == 1
    assert hidden.stdout.splitlines() == [
        f"di-cdb A asked by {app_ip}: REFUSED",
        lines[1],
        "  (no records)",
        "from: di-cdb is on network di-cb, which this client does not see: not answered from "
        "the registry",
        f"from: forwarded to {upstream} (not in the registry)"]
    # From the host (loopback) every user-defined network is seen.
    host = run("check", "di-cdb", *settings)
    assert host.returncode == 0
    assert host.stdout.splitlines()[1].split()[-1] == made.boxes["di-cdb"].ip("di-cb")

    # In sidecar mode loopback is di-capp: the same view as from its address.
    sidecar = run("check", "di-cdb", "--from", "127.0.0.1", "--as-container", "di-capp",
                  *settings)
    assert sidecar.returncode == 1
    assert sidecar.stdout.splitlines()[1] == (
        "client: loopback in sidecar mode: sees what container di-capp sees; networks di-ca "
        "(in lookup order); other names are forwarded")
    assert sidecar.stdout.splitlines()[3:] == hidden.stdout.splitlines()[3:]


def test_registry_json_lists_the_containers(made: Lab, settings: list[str]) -> None:
    done = run("registry", "--json", *settings)
    assert done.returncode == 0, done.stderr
    entries = json.loads(done.stdout)["names"]
    ours = {(e["name"], e["network"]): e for e in entries
            if e["name"].startswith("di-c") or e["name"] == "files.test"}
    web, db, app = (made.boxes[n] for n in ("di-cweb", "di-cdb", "di-capp"))
    expected = {
        ("di-cweb", "di-ca"): web.ip("di-ca"), ("di-cwww", "di-ca"): web.ip("di-ca"),
        ("di-cdb", "di-cb"): db.ip("di-cb"), ("di-capp", "di-ca"): app.ip("di-ca"),
    }
    assert set(ours) == {*expected, ("files.test", None)}
    for key, address in expected.items():
        assert ours[key]["ipv4"] == [address]
        (record,) = ours[key]["records"]
        assert record["source"] == "docker"
        assert f"container {key[0] if key[0] != 'di-cwww' else 'di-cweb'} (" in record["origin"]
    # Each container's short ID is a name of its own on its network, as in Docker.
    by_id = {(e["name"], e["network"]): e["ipv4"] for e in entries}
    for box, network in ((web, "di-ca"), (db, "di-cb"), (app, "di-ca")):
        assert by_id[(box.short_id, network)] == [box.ip(network)]
    assert ours[("files.test", None)]["records"][0]["source"] == "hosts"


def test_unreachable_engine_is_one_line(tmp_path: Path, settings: list[str]) -> None:
    missing = f"unix://{tmp_path}/nothing.sock"
    done = run("check", "files.test", "--docker-host", missing, *settings)
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        f"dockdns: docker engine {missing} unreachable: [Errno 2] No such file or directory; "
        "its names are left out"]
    assert done.stdout.splitlines()[1].split()[-1] == "198.51.100.20"

    # An engine that takes the connection and never answers: reported once its wait is over.
    hung = tmp_path / "hung.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(hung))
        listener.listen(16)
        done = run("registry", "--docker-host", f"unix://{hung}", *settings)
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        f"dockdns: docker engine unix://{hung} did not answer within 10 s; its names are left "
        "out"]
    assert done.stdout.splitlines()[-1] == "1 names"
