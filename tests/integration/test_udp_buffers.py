"""A real daemon's UDP buffers (issue 16, nothing lost at capacity): the size asked is the size
its listening socket has; a burst that waits while the daemon is stopped is answered whole
with the default buffer where the kernel's default drops most of it; and a reply the kernel
refuses for want of send-buffer room (EAGAIN, made real by a slow qdisc in a network namespace of
the test's own) waits in the daemon's queue instead of being lost."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.message
import pytest

from resolver.serve.settings import DEFAULT_UDP_BUFFER
from resolver.serve.sockets import SO_RCVBUFFORCE
from tests.conftest import IN_CI
from tests.support.daemon import REPO, RunningDaemon, dockdns
from tests.support.peer_socket import udp_socket_of

# Queries sent while the daemon is stopped: at 832 bytes of the kernel's accounting each (a
# small query on loopback), three times what the kernel's default buffer (212,992) holds.
BURST = 800
# How long the client waits for one more reply before it counts the rest as never coming: a
# bound, not a measurement (every reply that will come comes within milliseconds).
QUIET = 3.0


def _require_root() -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("these tests need root (another process's socket, forced buffers)")
        pytest.skip("these tests need root")


def buffers(daemon: RunningDaemon) -> tuple[int, int]:
    with udp_socket_of(daemon.process.pid, daemon.port) as sock:
        return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))


def test_the_listening_socket_has_the_buffers_asked(hosts_file: str) -> None:
    _require_root()
    with dockdns("--hosts-file", hosts_file, "--upstream", "127.0.0.1:9") as default:
        # The kernel keeps twice what is asked (socket(7)); as root past net.core.rmem_max.
        assert buffers(default) == (2 * DEFAULT_UDP_BUFFER, 2 * DEFAULT_UDP_BUFFER)
    with dockdns("--hosts-file", hosts_file, "--upstream", "127.0.0.1:9",
                 "--udp-buffer", "3M") as asked:
        assert buffers(asked) == (6 << 20, 6 << 20)
    with dockdns("--hosts-file", hosts_file, "--upstream", "127.0.0.1:9",
                 "--udp-buffer", "0") as kernel:
        rmem_default = int(Path("/proc/sys/net/core/rmem_default").read_text())
        wmem_default = int(Path("/proc/sys/net/core/wmem_default").read_text())
        assert buffers(kernel) == (rmem_default, wmem_default)


@contextlib.contextmanager
def stopped(process: subprocess.Popen[bytes]) -> Iterator[None]:
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def query(name: str, qid: int) -> bytes:
    message = dns.message.make_query(name, "A")
    message.id = qid
    return message.to_wire()


def burst_while_stopped(daemon: RunningDaemon, count: int) -> set[int]:
    """``count`` queries sent while the daemon is stopped (they can only wait in its receive
    buffer), read by the client only once the daemon runs again: the IDs answered."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        # Room for every reply: the client reads only after the whole burst is answered.
        client.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        client.connect((daemon.host, daemon.port))
        assert daemon.sees("web1") == {"10.1.2.3"}  # in the memo: answered inline
        with stopped(daemon.process):
            for qid in range(count):
                client.send(query("web1", qid))  # on loopback: in the daemon's queue, or dropped
        client.settimeout(QUIET)
        answered: set[int] = set()
        with contextlib.suppress(TimeoutError):
            while len(answered) < count:
                reply = dns.message.from_wire(client.recv(65535))
                assert [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.1.2.3"]
                answered.add(reply.id)
        return answered


def test_a_burst_beyond_the_kernels_default_buffer_is_answered_whole(hosts_file: str) -> None:
    _require_root()
    rmem_default = int(Path("/proc/sys/net/core/rmem_default").read_text())
    count = max(BURST, 3 * rmem_default // 832)
    assert count * 832 < DEFAULT_UDP_BUFFER  # well within the default buffer
    with dockdns("--hosts-file", hosts_file, "--upstream", "127.0.0.1:9") as daemon:
        assert burst_while_stopped(daemon, count) == set(range(count))
    # The same burst into the kernel's default buffer: most of it is dropped before dockdns
    # could read it (what the default buffer above prevents).
    with dockdns("--hosts-file", hosts_file, "--upstream", "127.0.0.1:9",
                 "--udp-buffer", "0") as small:
        answered = burst_while_stopped(small, count)
        assert 0 < len(answered) < count // 2


# Inside a network namespace of its own (unshare -n): loopback behind a token bucket slow
# enough that replies pile up in the qdisc, where they still count against the sender's
# buffer; the daemon's send buffer then shrunk to the kernel's floor through a duplicate of its
# socket (its receive buffer stays as large as the daemon made it), so that sendmmsg soon says
# EAGAIN. Prints the IDs answered and the namespace's UDP counters around the burst.
SLOW_LOOPBACK = r"""
import json, socket, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from benchmarks import capacity
from resolver.serve.sockets import SO_RCVBUFFORCE
from tests.support.peer_socket import udp_socket_of
import dns.message
hosts, count = sys.argv[2], int(sys.argv[3])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "2mbit",
                "burst", "1600", "limit", "4mb"], check=True)
daemon = subprocess.Popen([sys.executable, "-m", "resolver", "serve", "--listen",
                           "127.0.0.1:5353", "--no-docker", "--no-metrics", "--upstream",
                           "127.0.0.1:9", "--hosts-file", hosts, "--log-level", "warning"],
                          cwd=sys.argv[1])
try:
    def ask(client, qid):
        message = dns.message.make_query("web1", "A")
        message.id = qid
        client.send(message.to_wire())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        client.connect(("127.0.0.1", 5353))
        client.settimeout(0.5)
        for attempt in range(60):  # until it answers (bounded), and web1 is in the memo
            try:
                ask(client, 65535)
                client.recv(65535)
                break
            except TimeoutError:
                continue
            except ConnectionRefusedError:  # not bound yet
                time.sleep(0.2)
        else:
            sys.exit("dockdns never answered")
        with udp_socket_of(daemon.pid, 5353) as shared:
            shared.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 0)  # the kernel's floor
        before = capacity.udp_counters()
        for qid in range(count):
            ask(client, qid)
        client.settimeout(10.0)
        answered = set()
        try:
            while len(answered) < count:
                reply = dns.message.from_wire(client.recv(65535))
                if [rd.to_text() for rrset in reply.answer for rd in rrset] == ["10.1.2.3"]:
                    answered.add(reply.id)
        except TimeoutError:
            pass
        after = capacity.udp_counters()
    print(json.dumps({"answered": sorted(answered),
                      "counters": {k: after[k] - before[k] for k in after}}))
finally:
    daemon.terminate()
    daemon.wait(timeout=10)
"""


def test_replies_refused_for_send_buffer_room_are_queued_not_lost(hosts_file: str) -> None:
    _require_root()
    for tool in ("unshare", "tc", "ip"):
        if shutil.which(tool) is None:
            if IN_CI:
                pytest.fail(f"{tool} is needed (util-linux, iproute2)")
            pytest.skip(f"{tool} is not installed")
    count = 400
    done = subprocess.run(["unshare", "-n", sys.executable, "-c", SLOW_LOOPBACK, str(REPO),
                           hosts_file, str(count)], capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0 and "tbf" in done.stderr and not IN_CI:
        pytest.skip(f"no token bucket qdisc in this kernel: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    counters = result["counters"]
    # The kernel refused sends for want of room (EAGAIN, counted as SndbufErrors; the client's
    # socket blocks instead, which is not counted)...
    assert counters["SndbufErrors"] > 0, counters
    # ... and still every query was answered: the refused replies waited and went later.
    assert counters["RcvbufErrors"] == 0, counters
    assert result["answered"] == list(range(count)), counters
