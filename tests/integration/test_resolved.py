"""dockdns registered with a real systemd-resolved (tests/support/resolved.py: Debian's package,
extracted, in a private mount and network namespace with its own bus), asked through the
downloaded resolvectl and resolved's stub at 127.0.0.53.

In the namespace (every process started there is stopped with it): a dnsmasq on 127.0.0.1:5399
registered (by the test, with resolvectl) as the server of ``~corp`` on the veth link dd0, as a
VPN would register its internal names; dockdns on
127.0.0.1:5390 with a hosts file, ``--domain docker`` and ``--resolved on``, its default
upstream resolved's stub (the namespace's resolv.conf for dockdns names only 127.0.0.53; the
servers in resolved's own /run/systemd/resolve/resolv.conf are unreachable from there).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.daemon import REPO, command, dockdns
from tests.support.engine import wait_for
from tests.support.net import free_port
from tests.support.resolved import ResolvedNamespace, resolved_namespace

DOCKDNS = "127.0.0.1:5390"
CORP = "127.0.0.1:5399"
NO_BUS = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/dockdns-test-bus"}


@dataclass
class Setup:
    ns: ResolvedNamespace
    log: Path
    process: subprocess.Popen[bytes]

    def dig(self, *args: str) -> str:
        done = self.ns.run("dig", "+time=5", "+tries=1", *args)
        return done.stdout

    def short(self, *args: str) -> list[str]:
        return self.dig("+short", *args).split()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def setup() -> Iterator[Setup]:
    with resolved_namespace() as ns:
        (ns.dir / "hosts").write_text("10.1.2.3 web\n10.1.2.4 db\n")
        (ns.dir / "resolv.conf").write_text("nameserver 127.0.0.53\n")
        corp = ns.popen("dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts",
                        "--bind-interfaces", "--listen-address=127.0.0.1", "--port=5399",
                        "--host-record=db.corp,10.77.0.7", log=ns.dir / "dnsmasq.log")
        assert corp.poll() is None
        for argv in (["ip", "link", "add", "dd0", "type", "veth", "peer", "name", "dd1"],
                     ["ip", "link", "set", "dd0", "up"], ["ip", "link", "set", "dd1", "up"],
                     # A link without an address is "down" to resolved.
                     ["ip", "addr", "add", "10.243.0.1/30", "dev", "dd0"],
                     ["ip", "addr", "add", "10.243.0.2/30", "dev", "dd1"],
                     [ns.resolvectl, "dns", "dd0", CORP],
                     [ns.resolvectl, "domain", "dd0", "~corp"]):
            ns.run(*argv, check=True)
        log = ns.dir / "dockdns.log"
        process = ns.dockdns(DOCKDNS, "--no-docker", "--hosts-file", str(ns.dir / "hosts"),
                             "--domain", "docker", log=log)
        yield Setup(ns, log, process)


def test_host_programs_resolve_container_names_and_the_link_is_reverted(setup: Setup) -> None:
    ns = setup.ns
    query = ns.run(ns.resolvectl, "query", "web.docker")
    assert query.returncode == 0 and "10.1.2.3" in query.stdout, query.stdout + query.stderr
    assert setup.short("@127.0.0.53", "web.docker") == ["10.1.2.3"]
    status = ns.run(ns.resolvectl, "status", "dockdns0").stdout
    assert "~docker" in status and DOCKDNS in status and "-DefaultRoute" in status, status
    # Split DNS through the stub still works for the other link's domain...
    assert setup.short("@127.0.0.53", "db.corp") == ["10.77.0.7"]
    # ...and dockdns forwards through the stub, so it gets split DNS too (resolved's own list of
    # servers behind the stub holds only the machine's resolver, unreachable here).
    assert "forwarding through resolved's stub" in setup.log_text()
    assert setup.short(f"@{DOCKDNS.split(':')[0]}", "-p", DOCKDNS.split(":")[1],
                       "db.corp") == ["10.77.0.7"]
    # A name in dockdns's own zone that it does not know is answered here, never forwarded (the
    # stub would send it straight back): NXDOMAIN from dockdns and through the stub alike.
    assert "status: NXDOMAIN" in setup.dig("-p", "5390", "@127.0.0.1", "nope.docker")
    assert "status: NXDOMAIN" in setup.dig("@127.0.0.53", "nope.docker")
    assert "came back" not in setup.log_text()


def test_link_is_reverted_when_dockdns_exits(setup: Setup) -> None:
    ns = setup.ns
    assert setup.short("@127.0.0.53", "web.docker") == ["10.1.2.3"]
    setup.process.send_signal(signal.SIGTERM)
    assert setup.process.wait(timeout=30) == 0, setup.log_text()
    assert "systemd-resolved: link reverted" in setup.log_text()
    assert ns.run("ip", "link", "show", "dockdns0").returncode != 0
    status = ns.run(ns.resolvectl, "status").stdout
    assert "~docker" not in status and DOCKDNS not in status, status
    assert ns.run(ns.resolvectl, "query", "web.docker").returncode != 0
    # The other link is as it was.
    assert setup.short("@127.0.0.53", "db.corp") == ["10.77.0.7"]


def test_a_query_that_comes_back_is_dropped_with_one_line(setup: Setup) -> None:
    ns = setup.ns
    # Misconfigured on purpose: dockdns also as a default-route server of another link, so
    # resolved sends it every name, including those dockdns forwards to the stub.
    ns.run(ns.resolvectl, "dns", "dd1", DOCKDNS, check=True)
    ns.run(ns.resolvectl, "default-route", "dd1", "yes", check=True)
    answer = setup.dig("-p", "5390", "@127.0.0.1", "loop.example")
    assert "status: NOERROR" not in answer, answer
    wait_for(lambda: "dropped a query for loop.example that dockdns itself forwarded"
             in setup.log_text(), message="the loop log line")
    # One line per loop, not one per round trip (the query is dropped, not sent round again).
    assert setup.log_text().count("that dockdns itself forwarded") == 1
    # dockdns's own names are unaffected.
    assert setup.short("@127.0.0.53", "web.docker") == ["10.1.2.3"]


def test_resolved_on_without_resolved_is_a_startup_error() -> None:
    done = subprocess.run(command("serve", "--listen", f"127.0.0.1:{free_port('127.0.0.1')}",
                                  "--no-docker",
                                  "--no-metrics", "--resolved", "on"),
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, **NO_BUS, "DOCKDNS_RESOLV_CONF": os.devnull})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("dockdns: --resolved on: cannot register with systemd-resolved:")
    assert "Traceback" not in done.stderr


def test_auto_without_a_bus_is_one_line_and_serves_on(hosts_file: str) -> None:
    with dockdns("--hosts-file", hosts_file, env={**NO_BUS, "DOCKDNS_RESOLVED": "auto"}) as d:
        assert d.sees("web1") == {"10.1.2.3"}
        lines = [line for line in d.log().splitlines() if "systemd-resolved" in line]
        assert len(lines) == 1 and "integration off: no system bus" in lines[0], lines


def test_every_worker_keeps_owned_names_local() -> None:
    """With --workers N, worker 0 registers; every worker answers the owned zones itself, so a
    name there never goes to the stub from whichever worker the kernel hands the query to."""
    with resolved_namespace() as ns:
        (ns.dir / "hosts").write_text("10.1.2.3 web\n")
        log = ns.dir / "dockdns.log"
        ns.dockdns(DOCKDNS, "--no-docker", "--hosts-file", str(ns.dir / "hosts"),
                   "--domain", "docker", "--workers", "2", log=log)
        wait_for(lambda: log.read_text().count("dockdns serving on") == 2,
                 message="both workers serving")
        assert log.read_text().count("is the DNS server of ~docker") == 1
        for index in range(8):  # each from a new source port: spread over both workers
            for server, name in ((["@127.0.0.53"], f"s{index}.docker"),
                                 (["@127.0.0.1", "-p", "5390"], f"d{index}.docker")):
                reply = ns.run("dig", "+time=5", "+tries=1", *server, name).stdout
                assert "status: NXDOMAIN" in reply, reply
        # Asked of dockdns directly, each name reached dockdns once: no worker sent it round
        # through the stub (which would bring it back, in another case).
        text = log.read_text().lower()
        for index in range(8):
            assert text.count(f"query d{index}.docker a from") == 1, text
        assert "came back" not in text
