"""`dockdns check` and `dockdns registry` through the real CLI, with a real dnsmasq upstream."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import pytest

from discovery.registry.model import Client, Network, Record, Snapshot, SourcePart
from resolver.config import settings as config_module
from resolver.ops.explain import explain
from tests.integration.test_config import run
from tests.support.net import ask, free_port


@pytest.fixture
def dnsmasq() -> Iterator[int]:
    """A real upstream on loopback that knows ext.test and nothing else (REFUSED)."""
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    port = free_port()
    process = subprocess.Popen(
        [binary, "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
         "--listen-address=127.0.0.1", f"--port={port}", "--local-ttl=300",
         "--host-record=ext.test,198.51.100.7", "--pid-file="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                ask("127.0.0.1", port, "ext.test", timeout=0.2)
                break
            except (dns.exception.Timeout, ConnectionRefusedError):
                continue
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_check_explains_a_hosts_file_name(hosts_file: str) -> None:
    done = run("check", "Web-Alias", "--hosts-file", hosts_file, "--no-docker", "--ttl", "42")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Web-Alias A asked by 127.0.0.1: NOERROR"
    assert "42" in lines[1] and lines[1].split()[-1] == "10.1.2.3"
    assert lines[2] == (f'from: hosts file {hosts_file}:1 "10.1.2.3 web1 Web-Alias", '
                        f"visible on every network")


def test_check_explains_a_forwarded_name(dnsmasq: int, hosts_file: str) -> None:
    done = run("check", "ext.test", "--hosts-file", hosts_file, "--no-docker",
               "--upstream", f"127.0.0.1:{dnsmasq}", "--no-special-names")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "ext.test A asked by 127.0.0.1: NOERROR"
    assert lines[1].split()[-1] == "198.51.100.7"
    assert lines[2] == f"from: forwarded to 127.0.0.1:{dnsmasq} (not in the registry)"

    # A name neither the registry nor the upstream has: the upstream's word, and exit 1.
    missing = run("check", "missing.test", "--no-docker", "--upstream", f"127.0.0.1:{dnsmasq}",
                  "--no-special-names")
    assert missing.returncode == 1
    assert missing.stdout.splitlines()[0] == "missing.test A asked by 127.0.0.1: REFUSED"


def test_check_without_upstream_or_with_a_dead_one(tmp_path: Path) -> None:
    # No --upstream and a resolv.conf without nameservers: as serve, nowhere to forward to.
    empty = tmp_path / "resolv.conf"
    empty.write_text("search example\n")
    none = run("check", "ext.test", "--no-docker", "--resolv-conf", str(empty),
               "--no-special-names")
    assert none.returncode == 1
    assert "would be forwarded, but no upstream is set" in none.stdout
    dead_port = free_port()
    dead = run("check", "ext.test", "--no-docker", "--upstream", f"127.0.0.1:{dead_port}",
               "--no-special-names")
    assert dead.returncode == 1
    assert f"forwarded, but no upstream answered: 127.0.0.1:{dead_port}:" in dead.stdout


def test_check_from_a_client_and_bad_questions(hosts_file: str) -> None:
    done = run("check", "multi", "AAAA", "--from", "10.200.0.9", "--hosts-file", hosts_file,
               "--no-docker", "--allow", "10.200.0.0/16")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == (
        "client: not a container: sees every user-defined network; no network (hosts-file "
        "names only); other names are forwarded")
    assert "fd00::7" in done.stdout
    refused = run("check", "multi", "--from", "10.200.0.9", "--hosts-file", hosts_file,
                  "--no-docker")
    assert refused.returncode == 1
    assert refused.stdout.splitlines()[:2] == [
        "multi A asked by 10.200.0.9: REFUSED",
        "client: may not ask: not loopback, not on a Docker network, not in --allow (REFUSED)"]
    assert run("check", "web1", "BOGUS", "--no-docker").stderr == (
        "dockdns: unknown record type 'BOGUS'\n")
    assert run("check", "web1", "--from", "somewhere", "--no-docker").returncode == 2


def test_registry_lists_every_name(hosts_file: str) -> None:
    text = run("registry", "--hosts-file", hosts_file, "--no-docker")
    assert text.returncode == 0
    assert text.stdout.splitlines() == [
        f"multi\t(every network)\t10.1.2.4, 10.1.2.5, fd00::7\t{hosts_file}:2, {hosts_file}:3, "
        f"{hosts_file}:4",
        f"web-alias\t(every network)\t10.1.2.3\t{hosts_file}:1",
        f"web1\t(every network)\t10.1.2.3\t{hosts_file}:1",
        "3 names",
    ]
    listed = json.loads(run("registry", "--json", "--hosts-file", hosts_file,
                            "--no-docker").stdout)
    assert [entry["name"] for entry in listed["names"]] == ["multi", "web-alias", "web1"]
    assert listed["names"][0]["ipv6"] == ["fd00::7"]
    assert listed["names"][2]["records"][0]["origin"] == f"{hosts_file}:1"


# --- what a container sees, on a registry shaped as the Docker source makes it ---------------


def docker_like_snapshot() -> Snapshot:
    return Snapshot.build(1, [SourcePart(
        networks=(Network("front", subnets=()), Network("back", internal=True)),
        records=(
            Record(("web1", "0123456789ab"), ipv4=("10.10.0.2",), network="front", ptr="web1",
                   origin="container web1", source="docker"),
            Record(("db",), ipv4=("10.20.0.2",), network="back", ptr="db",
                   origin="container db", source="docker"),
            Record(("app",), ipv4=("10.10.0.3",), network="front", origin="container app",
                   source="docker"),
            Record(("app",), ipv4=("10.20.0.3",), network="back", origin="container app",
                   source="docker"),
        ),
        clients=(Client("10.10.0.2", ("front",), "web1"), Client("10.20.0.2", ("back",), "db"),
                 Client("10.10.0.3", ("front",), "app"), Client("10.20.0.3", ("back",), "app")),
    )])


def test_explain_a_container_name_from_a_container() -> None:
    config = config_module.build({"docker": False, "resolv_conf": "/dev/null"}, environ={})
    snapshot = docker_like_snapshot()
    result = explain(config, snapshot, "web1", "A", "10.10.0.3")
    assert result.rcode == "NOERROR" and result.answers[0].split()[-1] == "10.10.0.2"
    assert result.origins == ["found on network front",
                              "docker container web1, visible on network front"]
    assert result.client_note.startswith("container app, attached to front")
    # db's only network is internal: it sees back, and nothing is forwarded for it.
    from_db = explain(config, snapshot, "web1", "A", "10.20.0.2")
    assert from_db.rcode == "SERVFAIL"
    assert from_db.origins[0] == ("web1 is on network front, which this client does not see: "
                                  "not answered from the registry")
    assert "not forwarded" in from_db.origins[1]


def test_sidecar_sees_what_its_container_sees() -> None:
    snapshot = docker_like_snapshot()
    for reference in ("db", "/db"):
        config = config_module.build({"docker": False, "resolv_conf": "/dev/null",
                                  "as_container": reference}, environ={})
        result = explain(config, snapshot, "db", "A", "127.0.0.1")
        assert result.answers and result.answers[0].split()[-1] == "10.20.0.2"
        assert result.client_note.startswith("loopback in sidecar mode: sees what container db")
        # web1 is on front, which db is not on; and db may not forward.
        assert explain(config, snapshot, "web1", "A", "127.0.0.1").rcode == "SERVFAIL"
    # By ID prefix (the records carry the 12-character ID, as Docker's do).
    config = config_module.build({"docker": False, "resolv_conf": "/dev/null",
                                  "as_container": "0123456789ab"}, environ={})
    assert explain(config, snapshot, "app", "A", "::1").answers[0].split()[-1] == "10.10.0.3"
    # A container on two networks: its sidecar sees both.
    config = config_module.build({"docker": False, "resolv_conf": "/dev/null",
                                  "as_container": "app"}, environ={})
    assert explain(config, snapshot, "db", "A", "127.0.0.1").rcode == "NOERROR"
    assert explain(config, snapshot, "web1", "A", "127.0.0.1").rcode == "NOERROR"
    # Clients that are not on loopback keep their own view.
    assert explain(config, snapshot, "db", "A", "10.10.0.2").rcode == "SERVFAIL"
    # An unknown container: loopback sees no network at all, not every network.
    config = config_module.build({"docker": False, "resolv_conf": "/dev/null",
                                  "as_container": "ghost"}, environ={})
    ghost = explain(config, snapshot, "web1", "A", "127.0.0.1")
    assert ghost.rcode == "SERVFAIL" and "no network" in ghost.client_note


def test_check_reads_the_same_sources_as_serve(tmp_path: Path, hosts_file: str) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(f'hosts_files = ["{hosts_file}"]\ndocker = false\ndomain = "corp.test"\n')
    done = run("check", "web1.corp.test", "--config", str(toml))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split()[-1] == "10.1.2.3"
