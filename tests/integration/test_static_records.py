"""Static records through the real daemon over loopback sockets: every type over UDP and TCP,
CNAMEs chased inside dockdns and through a real upstream (dnsmasq), reloads on SIGHUP, and
invalid records refused with one line and exit status 2."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import dns.rdatatype
import pytest

from tests.support.daemon import REPO, RunningDaemon, command, dockdns
from tests.support.engine import wait_for
from tests.support.net import addresses, ask
from tests.support.upstream import Dnsmasq, dnsmasq

TOML = '''
[[records]]
name = "web.static.test"
type = "A"
data = "192.0.2.10"
ttl = 42

[[records]]
name = "web.static.test"
type = "AAAA"
data = "2001:db8::10"

[[records]]
name = "www.static.test"
type = "CNAME"
data = "web.static.test"

[[records]]
name = "printer.static.test"
type = "CNAME"
data = "printer"

[[records]]
name = "out.static.test"
type = "CNAME"
data = "ext.upstream.test"

[[records]]
name = "txt.static.test"
type = "TXT"
data = "v=spf1 -all"

[[records]]
name = "static.test"
type = "MX"
data = "10 web.static.test"

[[records]]
name = "_http._tcp.static.test"
type = "SRV"
data = "0 5 8080 web.static.test"

[[records]]
name = "10.2.0.192.in-addr.arpa"
type = "PTR"
data = "web.static.test"
'''


@pytest.fixture(scope="module")
def upstream() -> Iterator[Dnsmasq]:
    with dnsmasq("--local-ttl=300", "--host-record=ext.upstream.test,198.51.100.30") as server:
        yield server


@pytest.fixture()
def daemon(tmp_path: Path, upstream: Dnsmasq) -> Iterator[RunningDaemon]:
    config = tmp_path / "dockdns.toml"
    config.write_text(TOML)
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.50 printer\n")
    with dockdns("--config", str(config), "--hosts-file", str(hosts), "--upstream",
                 upstream.address) as running:
        yield running


def rdatas(daemon: RunningDaemon, name: str, rdtype: str = "A", tcp: bool = False) -> list[str]:
    reply = ask(daemon.host, daemon.port, name, rdtype, tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR, (name, rdtype, reply)
    return sorted(f"{rr.rdtype.name} {rd.to_text()}" for rr in reply.answer for rd in rr)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_every_type_answers(daemon: RunningDaemon, tcp: bool) -> None:
    assert rdatas(daemon, "web.static.test", tcp=tcp) == ["A 192.0.2.10"]
    assert rdatas(daemon, "WEB.static.test", "AAAA", tcp) == ["AAAA 2001:db8::10"]
    assert rdatas(daemon, "txt.static.test", "TXT", tcp) == ['TXT "v=spf1 -all"']
    assert rdatas(daemon, "static.test", "MX", tcp) == ["MX 10 web.static.test."]
    assert rdatas(daemon, "_http._tcp.static.test", "SRV", tcp) == \
        ["SRV 0 5 8080 web.static.test."]
    assert rdatas(daemon, "10.2.0.192.in-addr.arpa", "PTR", tcp) == ["PTR web.static.test."]
    reply = ask(daemon.host, daemon.port, "web.static.test", tcp=tcp)
    assert reply.answer[0].ttl == 42  # the record's own TTL
    # A known name, another type: NOERROR and nothing, never forwarded.
    assert rdatas(daemon, "txt.static.test", "A", tcp) == []


def test_records_from_flags(upstream: Dnsmasq) -> None:
    # Flags replace the file's list, as for every list setting.
    with dockdns("--record", "flag.static.test A 192.0.2.77", "--record",
                 "flag.static.test TXT two words", "--upstream", upstream.address) as daemon:
        assert rdatas(daemon, "flag.static.test") == ["A 192.0.2.77"]
        assert rdatas(daemon, "flag.static.test", "TXT") == ['TXT "two words"']


def test_cname_chased_inside_dockdns(daemon: RunningDaemon) -> None:
    assert rdatas(daemon, "www.static.test") == ["A 192.0.2.10", "CNAME web.static.test."]
    assert rdatas(daemon, "www.static.test", "AAAA") == ["AAAA 2001:db8::10",
                                                          "CNAME web.static.test."]
    # Pointing at a hosts-file name (the same chase reaches container names).
    assert rdatas(daemon, "printer.static.test") == ["A 192.0.2.50", "CNAME printer."]
    assert rdatas(daemon, "www.static.test", "CNAME") == ["CNAME web.static.test."]


def test_cname_outside_chased_through_the_forwarder(daemon: RunningDaemon,
                                                    upstream: Dnsmasq) -> None:
    for tcp in (False, True, False):  # the third from the memo
        reply = ask(daemon.host, daemon.port, "out.static.test", tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR
        assert [rr.rdtype for rr in reply.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
        assert addresses(reply) == {"198.51.100.30"}
        assert reply.answer[1].name.to_text() == "ext.upstream.test."
    assert "ext.upstream.test" in upstream.log()
    assert "out.static.test" not in upstream.log()  # only the target leaves dockdns


def test_sighup_reloads_records(daemon: RunningDaemon, tmp_path: Path) -> None:
    config = tmp_path / "dockdns.toml"
    config.write_text(TOML.replace("192.0.2.10", "192.0.2.11") +
                      '[[records]]\nname = "new.static.test"\ntype = "A"\ndata = "192.0.2.12"\n')
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "config reloaded" in daemon.log(), message="the reload")
    assert rdatas(daemon, "web.static.test") == ["A 192.0.2.11"]
    assert rdatas(daemon, "new.static.test") == ["A 192.0.2.12"]
    assert rdatas(daemon, "www.static.test") == ["A 192.0.2.11", "CNAME web.static.test."]
    # An invalid record on reload: logged, the running records stay.
    config.write_text(TOML + '[[records]]\nname = "bad.static.test"\ntype = "A"\ndata = "x"\n')
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "config not reloaded" in daemon.log(), message="the rejected reload")
    assert rdatas(daemon, "new.static.test") == ["A 192.0.2.12"]


@pytest.mark.parametrize("record", ["bad.test A 2001:db8::1", "bad.test SOA x",
                                    "bad..test A 1.2.3.4", "bad.test"])
def test_invalid_record_exits_2_with_one_line(record: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOCKDNS_")}
    done = subprocess.run(command("serve", "--no-docker", "--record", record, "--upstream",
                                  "127.0.0.1:9"), capture_output=True, text=True, cwd=REPO,
                          env=clean, timeout=30, check=False)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dockdns: invalid setting 'records'"), \
        done.stderr
