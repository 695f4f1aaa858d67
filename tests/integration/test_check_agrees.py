"""``dockdns check`` runs the handler and forward chain ``serve`` runs: with the same flags, its
answer is the answer a real query to a running ``serve`` gets, for each path a name can take (a
local name, a --forward-zone name, a private reverse name under --bogus-priv, a name forwarded to
the nameservers of --resolv-conf when no --upstream is given). The default-bridge case needs the
engine: tests/engine/test_check_agrees.py."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from tests.integration.test_config import run
from tests.support.daemon import dockdns
from tests.support.net import ask
from tests.support.upstream import DNSMASQ, Dnsmasq, dnsmasq, wait_answering


def served(reply: dns.message.Message) -> tuple[str, set[str]]:
    return dns.rcode.to_text(reply.rcode()), {
        rdata.to_text() for rrset in reply.answer for rdata in rrset}


def checked(*args: str) -> tuple[str, set[str], str]:
    done = run("check", *args)
    assert done.returncode in (0, 1), done.stderr
    lines = done.stdout.splitlines()
    rcode = lines[0].rsplit(": ", 1)[1]
    answers = {line.split(None, 4)[4] for line in lines[1:] if line.startswith("  ")
               and line.strip() != "(no records)"}
    return rcode, answers, done.stdout


@pytest.fixture
def upstreams() -> Iterator[tuple[Dnsmasq, Dnsmasq]]:
    with dnsmasq("--host-record=ext.test,198.51.100.7") as default, \
            dnsmasq("--host-record=web1.corp.test,10.99.0.5",
                    "--ptr-record=5.0.99.10.in-addr.arpa,web1.corp.test") as corp:
        yield default, corp


def agree(args: list[str], name: str, rdtype: str = "A") -> str:
    """Ask ``serve`` and ``check`` with ``args``; both must give the same rcode and answers.
    The upstreams serve names under .test, which dockdns answers itself unless told not to."""
    args = [*args, "--no-special-names"]
    with dockdns(*args) as daemon:
        rcode, answers = served(ask(daemon.host, daemon.port, name, rdtype))
    c_rcode, c_answers, text = checked(name, rdtype, "--no-docker", *args)
    assert (c_rcode, c_answers) == (rcode, answers), text
    return text


def test_a_local_name(hosts_file: str, upstreams: tuple[Dnsmasq, Dnsmasq]) -> None:
    text = agree(["--hosts-file", hosts_file, "--upstream", upstreams[0].address], "web1")
    assert "from: hosts file" in text


def test_a_name_under_a_forward_zone(upstreams: tuple[Dnsmasq, Dnsmasq]) -> None:
    default, corp = upstreams
    args = ["--upstream", default.address, "--forward-zone", f"corp.test={corp.address}"]
    text = agree(args, "web1.corp.test")
    assert f"forwarded to {corp.address}" in text and "10.99.0.5" in text


def test_a_private_reverse_name_under_bogus_priv(upstreams: tuple[Dnsmasq, Dnsmasq]) -> None:
    default, corp = upstreams
    # Not covered by any zone: NXDOMAIN here, never forwarded.
    text = agree(["--upstream", default.address, "--bogus-priv"], "7.0.0.10.in-addr.arpa",
                 "PTR")
    assert "NXDOMAIN" in text.splitlines()[0] and "--bogus-priv" in text
    # Covered by a --forward-zone: that server gets it.
    text = agree(["--upstream", default.address, "--bogus-priv", "--forward-zone",
                  f"10.in-addr.arpa={corp.address}"], "5.0.99.10.in-addr.arpa", "PTR")
    assert "web1.corp.test." in text


@pytest.fixture
def port53_upstream() -> Iterator[str]:
    """dnsmasq on port 53 of a loopback address of its own: resolv.conf has no port syntax."""
    host = "127.77.0.53"
    argv = [DNSMASQ, "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", f"--listen-address={host}", "--port=53",
            "--host-record=ext.test,198.51.100.7"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_answering(host, 53, process=process)
        yield host
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_a_forwarded_name_from_resolv_conf(tmp_path: Path, port53_upstream: str) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"search example\nnameserver {port53_upstream}\n")
    text = agree(["--resolv-conf", str(resolv)], "ext.test")
    assert "198.51.100.7" in text and f"forwarded to {port53_upstream}:53" in text
