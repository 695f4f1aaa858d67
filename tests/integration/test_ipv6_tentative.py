"""``--listen`` on an IPv6 address that is still tentative (duplicate address detection running,
as on a Docker gateway right after ``docker network create --ipv6``): dockdns waits for it
instead of exiting with "no interface has that address". A real kernel does the DAD, in a network
namespace of the test's own with a veth pair (DAD made to last ~3 s, so the address is surely
still tentative when dockdns starts)."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import command
from tests.support.netns import require_root_networking
from tests.support.proc import stop

ADDRESS = "fd00:5e:7e::1"


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def netns() -> Iterator[str]:
    require_root_networking()
    name = f"ddns6-{secrets.token_hex(3)}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "v6a", "type", "veth", "peer", "name", "v6b")
        for link in ("v6a", "v6b"):
            ip("netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{link}.accept_dad=1")
            ip("netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{link}.dad_transmits=3")
            ip("-n", name, "link", "set", link, "up")
        yield name
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("netns", "del", name)


def test_a_tentative_address_is_waited_for(netns: str, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("10.1.2.3 web1\n")
    log = tmp_path / "dockdns.log"
    ip("-n", netns, "addr", "add", f"{ADDRESS}/64", "dev", "v6a")
    assert "tentative" in ip("-n", netns, "-6", "addr", "show", "dev", "v6a")
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["ip", "netns", "exec", netns, *command(
                "serve", "--listen", f"[{ADDRESS}]:5353", "--no-docker", "--no-metrics",
                "--hosts-file", str(hosts), "--resolv-conf", "/dev/null", "--resolved", "off")],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        answer = ""
        for _ in range(150):  # bounded: 15 s at most
            if process.poll() is not None:
                break
            done = subprocess.run(["ip", "netns", "exec", netns, "dig", "+short", "+time=1",
                                   "+tries=1", "-p", "5353", f"@{ADDRESS}", "web1"],
                                  capture_output=True, text=True, check=False)
            answer = done.stdout.strip()
            if answer and not answer.startswith(";;"):  # ";;": dig's word that none answered
                break
            time.sleep(0.1)
        text = log.read_text(errors="replace")
        assert process.poll() is None, text
        assert answer == "10.1.2.3", text
        assert "still tentative (IPv6 duplicate address detection)" in text
    finally:
        stop(process)


def test_an_address_no_interface_has_is_still_one_line() -> None:
    done = subprocess.run(command("serve", "--listen", "[fd00:5e:7e::99]:5353", "--no-docker",
                                  "--no-metrics", "--resolv-conf", "/dev/null",
                                  "--resolved", "off"),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "dockdns: cannot listen on [fd00:5e:7e::99]:5353: no interface has that address; choose "
        "another with --listen")
