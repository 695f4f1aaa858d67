"""Forwarding-loop detection against a real dnsmasq that forwards everything to dockdns's own
listen address: dockdns's probe comes back to it, that upstream is marked a loop (logged once)
and never asked, and the other upstream answers."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.daemon import dockdns
from tests.support.net import addresses, ask, free_port
from tests.support.scrape import scrape, value
from tests.support.upstream import FaultServer
from tests.support.wait import wait_for


@contextmanager
def forwarding_dnsmasq(to_port: int) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a dnsmasq forwarding every name to 127.0.0.1:``to_port``."""
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq is not installed (Debian package dnsmasq-base)")
    port = free_port()
    process = subprocess.Popen(
        ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
         "--listen-address=127.0.0.1", f"--port={port}", "--pid-file=", "--cache-size=0",
         f"--server=127.0.0.1#{to_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)  # it binds at once; nothing asks it before dockdns has started
        assert process.poll() is None, "dnsmasq exited"
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)




def test_an_upstream_that_forwards_back_to_dockdns_is_detected_and_skipped() -> None:
    port = free_port()
    names = [f"n{n}.loop.infra" for n in range(5)]
    with FaultServer() as live, forwarding_dnsmasq(port) as looping:
        for name in names:
            live.add(name, "A", 300, "198.51.100.90")
        with dockdns("--upstream", looping, "--upstream", live.address, port=port) as daemon:
            wait_for(lambda: "forwarding loop" in daemon.log())
            replies = [ask(daemon.host, daemon.port, name) for name in names]
            assert daemon.metrics_port is not None
            samples = scrape(daemon.metrics_port)
            log = daemon.log()
    assert all(addresses(reply) == {"198.51.100.90"} for reply in replies)
    assert log.count("forwarding loop") == 1
    assert looping in log
    # The looping upstream is first in order, yet no question went to it.
    asked_loop = sum(value(samples, "dockdns_upstream_requests_total", upstream=looping,
                           outcome=outcome)
                     for outcome in ("ok", "timeout", "servfail", "refused", "error"))
    assert asked_loop == 0
    assert live.count(names[0]) == 1


def test_an_upstream_that_does_not_loop_is_kept() -> None:
    with FaultServer() as live:
        live.add("kept.loop.infra", "A", 300, "198.51.100.91")
        with dockdns("--upstream", live.address) as daemon:
            # The probe went out and came back answered (the fault server answers REFUSED or
            # NXDOMAIN for a name it does not hold), not through dockdns.
            wait_for(lambda: any("dockdns-loop.invalid" in str(q.name).lower()
                                 for q in live.queries))
            reply = ask(daemon.host, daemon.port, "kept.loop.infra")
            log = daemon.log()
    assert addresses(reply) == {"198.51.100.91"}
    assert "forwarding loop" not in log


def test_upstreams_changed_by_sighup_are_checked_again(tmp_path: Path) -> None:
    port = free_port()
    with FaultServer() as live, forwarding_dnsmasq(port) as looping:
        live.add("after.loop.infra", "A", 300, "198.51.100.92")
        toml = tmp_path / "dockdns.toml"
        toml.write_text(f'upstreams = ["{live.address}"]\n')
        with dockdns("--config", str(toml), port=port) as daemon:
            wait_for(lambda: any("dockdns-loop.invalid" in str(q.name).lower()
                                 for q in live.queries))
            assert "forwarding loop" not in daemon.log()
            toml.write_text(f'upstreams = ["{looping}", "{live.address}"]\n')
            daemon.signal(signal.SIGHUP)
            wait_for(lambda: "forwarding loop" in daemon.log())
            reply = ask(daemon.host, daemon.port, "after.loop.infra")
    assert addresses(reply) == {"198.51.100.92"}


def test_every_worker_finds_the_loop() -> None:
    port = free_port()
    names = [f"w{n}.loop.infra" for n in range(12)]
    with FaultServer() as live, forwarding_dnsmasq(port) as looping:
        for name in names:
            live.add(name, "A", 300, "198.51.100.93")
        with dockdns("--upstream", looping, "--upstream", live.address, "--workers", "2",
                     port=port) as daemon:
            wait_for(lambda: daemon.log().count("forwarding loop") == 2)
            replies = [ask(daemon.host, daemon.port, name) for name in names]
    # Each worker logged it once, and whichever worker a question reached, it went to the
    # live upstream only.
    assert all(addresses(reply) == {"198.51.100.93"} for reply in replies)
    assert all(live.count(name) == 1 for name in names)
