"""SIGHUP re-reads the config and applies it live; SIGTERM drains without losing an answer."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest
from dnslib import RR, DNSRecord

from resolver.answer.chain import ForwardedReply, Pending, Trace, pending_of
from resolver.answer.views import View
from resolver.config import settings as config_module
from resolver.config.settings import Config
from resolver.daemon.lifecycle import Daemon
from resolver.dns import wire
from resolver.dns.addresses import HostPort
from resolver.ops.stats import SOURCE_FORWARD
from tests.support.daemon import RunningDaemon, dockdns
from tests.support.net import addresses, ask, free_port, recv_framed
from tests.support.upstream import FaultServer


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Asker(threading.Thread):
    """Asks continuously until stopped; every query must get a reply (none dropped)."""

    def __init__(self, daemon: RunningDaemon, names: list[str]) -> None:
        super().__init__(daemon=True)
        self.target = (daemon.host, daemon.port)
        self.names = names
        self.stop = threading.Event()
        self.answered = 0
        self.failures: list[str] = []

    def run(self) -> None:
        index = 0
        while not self.stop.is_set() and self.answered < 100_000:
            name = self.names[index % len(self.names)]
            index += 1
            try:
                reply = ask(*self.target, name, timeout=3)
            except dns.exception.Timeout:
                self.failures.append(f"{name}: no reply")
                continue
            if reply.rcode() != 0:
                self.failures.append(f"{name}: rcode {reply.rcode()}")
            self.answered += 1


def test_sighup_applies_ttl_and_hosts_files_without_dropping_a_query(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("10.1.2.3 web1\n10.1.2.4 stays\n")
    second.write_text("10.1.2.99 web1\n10.1.2.4 stays\n10.7.7.7 newname\n")
    toml = tmp_path / "dockdns.toml"
    toml.write_text(f'ttl = 100\nhosts_files = ["{first}"]\n')
    with dockdns("--config", str(toml)) as daemon:
        reply = ask(daemon.host, daemon.port, "web1")
        assert addresses(reply) == {"10.1.2.3"} and reply.answer[0].ttl == 100

        asker = Asker(daemon, ["stays", "web1", "STAYS"])
        asker.start()
        wait_for(lambda: asker.answered > 20, "queries before the reload")
        toml.write_text(f'ttl = 200\nhosts_files = ["{second}"]\n'
                        f'docker_hosts = ["unix:///nonexistent.sock"]\n')
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in daemon.log(), "the reload")
        answered_at_reload = asker.answered
        wait_for(lambda: asker.answered > answered_at_reload + 20, "queries after the reload")
        asker.stop.set()
        asker.join(timeout=10)
        assert asker.failures == []

        reply = ask(daemon.host, daemon.port, "web1")
        assert addresses(reply) == {"10.1.2.99"} and reply.answer[0].ttl == 200
        assert addresses(ask(daemon.host, daemon.port, "newname")) == {"10.7.7.7"}
        log = daemon.log()
        assert "config reloaded; changed: hosts_files, ttl" in log
        assert "docker_hosts changed but only a restart applies that" in log

        # An invalid file on SIGHUP: logged, and the running config stays.
        toml.write_text("ttl = = 5\n")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "config not reloaded" in daemon.log(), "the rejected reload")
        assert ask(daemon.host, daemon.port, "web1").answer[0].ttl == 200


def test_sighup_hands_new_upstreams_to_the_reconfigure_hooks(tmp_path: Path) -> None:
    """The forwarder takes upstreams and zones through ``Daemon.reconfigure_hooks``."""
    toml = tmp_path / "dockdns.toml"
    toml.write_text('upstreams = ["127.0.0.1:5301"]\nlog_level = "warning"\n')
    flags = {"config": str(toml), "listen": [f"127.0.0.1:{free_port()}"], "docker": False,
             "metrics": False}
    seen: list[Config] = []

    async def main() -> Daemon:
        daemon = Daemon(config_module.build(flags, environ={}),
                        reread=lambda: config_module.build(flags, environ={}))
        daemon.reconfigure_hooks.append(seen.append)
        await daemon.startup()
        toml.write_text('upstreams = ["127.0.0.1:5302", "127.0.0.1:5303"]\nttl = 7\n')
        daemon.reload()
        await daemon.shutdown()
        return daemon

    daemon = asyncio.run(main())
    assert [c.upstreams for c in seen] == [(HostPort("127.0.0.1", 5302),
                                            HostPort("127.0.0.1", 5303))]
    assert daemon.config.ttl == 7 and daemon.handler.settings.ttl == 7
    assert daemon.config.log_level == "info"  # back to the default: the file no longer sets it


# --- SIGTERM under load -----------------------------------------------------------------------


@contextmanager
def slow_upstream(delay: float) -> Iterator[int]:
    """A loopback UDP server answering every question with 192.0.2.1 after ``delay`` seconds,
    so that forwarded queries are still in flight when the stop signal comes."""
    port = free_port()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            request = DNSRecord.parse(data)
            reply = request.reply()
            reply.add_answer(*RR.fromZone(f"{request.q.qname} 60 A 192.0.2.1"))
            threading.Timer(delay, sock.sendto, (reply.pack(), peer)).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


class Load(threading.Thread):
    """One client, one query at a time, UDP or TCP, until the daemon stops answering."""

    def __init__(self, target: tuple[str, int], number: int, tcp: bool) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.number = number
        self.tcp = tcp
        self.replies = 0

    def questions(self) -> Iterator[dns.message.Message]:
        for index in range(5000):
            kind = index % 4
            name = ("web1", "multi", f"fwd-{self.number}-{index}.test", "web1")[kind]
            yield dns.message.make_query(name, "AAAA" if kind == 3 else "A")

    def run(self) -> None:
        if self.tcp:
            self._run_tcp()
        else:
            self._run_udp()

    def _run_udp(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            for query in self.questions():
                sock.sendto(query.to_wire(), self.target)
                try:
                    while True:
                        reply = dns.message.from_wire(sock.recv(65535))
                        if reply.id == query.id:
                            break
                except (TimeoutError, ConnectionRefusedError):
                    return  # the daemon has stopped: this query was never taken
                self.replies += 1

    def _run_tcp(self) -> None:
        with socket.create_connection(self.target, timeout=3) as sock:
            for query in self.questions():
                wire = query.to_wire()
                try:
                    sock.sendall(struct.pack("!H", len(wire)) + wire)
                    reply = dns.message.from_wire(recv_framed(sock))
                except OSError:
                    return
                assert reply.id == query.id
                self.replies += 1


def test_sigterm_under_load_loses_no_answered_query(hosts_file: str) -> None:
    with slow_upstream(0.3) as upstream:
        with dockdns("--hosts-file", hosts_file, "--upstream", f"127.0.0.1:{upstream}",
                     "--log-level", "info") as daemon:
            target = (daemon.host, daemon.port)
            clients = [Load(target, n, tcp=n >= 6) for n in range(8)]
            for client in clients:
                client.start()
            wait_for(lambda: sum(c.replies for c in clients) >= 400, "load to build up")
            daemon.signal(signal.SIGTERM)
            for client in clients:
                client.join(timeout=30)
            assert daemon.process.wait(timeout=15) == 0
            log = daemon.log()
    match = re.search(r"dockdns stopped; answered (\d+) queries", log)
    assert match is not None, log
    received = sum(client.replies for client in clients)
    # Every query the daemon counted as answered reached its client: none was cut by the stop.
    assert int(match.group(1)) == received
    assert "drained in-flight queries: 0 cancelled" in log
    assert all(not client.is_alive() for client in clients)


class SlowForwarder:
    """A ``Forwarder`` (resolver/answer/handler.py) that takes 0.3 s per query, standing in for the
    forwarder branch here: it keeps full-path queries in flight when the stop comes."""

    def __init__(self) -> None:
        self.inflight = 0
        self.started = 0
        self.answered = 0

    def forward(self, query: wire.Query, packet: bytes, tcp: bool,
                view: View, trace: Trace | None = None) -> Pending[ForwardedReply]:
        return pending_of(self._slowly(query, tcp))

    async def _slowly(self, query: wire.Query, tcp: bool) -> ForwardedReply:
        self.started += 1
        self.inflight += 1
        try:
            await asyncio.sleep(0.3)
        finally:
            self.inflight -= 1
        answer = wire.rr_to_qname(wire.TYPE_A, 60, wire.address_rdata("192.0.2.1"))
        size = wire.MAX_TCP_SIZE if tcp else query.max_udp_size
        self.answered += 1
        return ForwardedReply(wire.build_reply(query, wire.NOERROR, [answer], size),
                              wire.NOERROR, SOURCE_FORWARD)


def test_stop_drains_queries_in_flight_on_the_full_path(
        hosts_file: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "dockdns")
    config = config_module.build({"listen": [f"127.0.0.1:{free_port()}"], "docker": False,
                                  "metrics": False, "hosts_files": [hosts_file]}, environ={})
    forwarder = SlowForwarder()
    clients: list[Load] = []

    async def main() -> tuple[Daemon, int]:
        daemon = Daemon(config)
        daemon.handler.forwarder = forwarder
        await daemon.startup()
        target = ("127.0.0.1", config.listen[0].port)
        clients.extend(Load(target, n, tcp=n >= 6) for n in range(8))
        for client in clients:
            client.start()
        while sum(c.replies for c in clients) < 100 or forwarder.inflight == 0:
            await asyncio.sleep(0.01)
        in_flight_at_stop = forwarder.inflight
        daemon.signals.on_stop(signal.SIGTERM)  # what the SIGTERM handler does
        await daemon.shutdown()
        return daemon, in_flight_at_stop

    daemon, in_flight_at_stop = asyncio.run(main())
    for client in clients:
        client.join(timeout=30)
    assert in_flight_at_stop > 0
    # Every query taken before the stop was finished within the drain, none cancelled...
    assert forwarder.answered == forwarder.started
    # ...and every answer reached its client.
    assert daemon.handler.stats.answered() == sum(client.replies for client in clients)
    assert "drained in-flight queries: 0 cancelled" in caplog.text


def test_sighup_switches_upstreams_in_the_running_daemon(tmp_path: Path) -> None:
    """End to end: a real daemon, two real upstreams, the config file edited, SIGHUP."""
    with FaultServer() as first, FaultServer() as second:
        first.add("where.test", "A", 300, "192.0.2.1")
        second.add("where.test", "A", 300, "192.0.2.2")
        second.add("fresh.test", "A", 300, "192.0.2.3")
        toml = tmp_path / "dockdns.toml"
        toml.write_text(f'upstreams = ["{first.address}"]\n')
        with dockdns("--config", str(toml)) as daemon:
            assert addresses(ask(daemon.host, daemon.port, "where.test")) == {"192.0.2.1"}
            toml.write_text(f'upstreams = ["{second.address}"]\n')
            daemon.signal(signal.SIGHUP)
            wait_for(lambda: "config reloaded" in daemon.log(), "the reload")
            assert addresses(ask(daemon.host, daemon.port, "fresh.test")) == {"192.0.2.3"}
            assert second.count("fresh.test") == 1 and first.count("fresh.test") == 0
            # What was cached from the first upstream stays until its TTL runs out.
            assert addresses(ask(daemon.host, daemon.port, "where.test")) == {"192.0.2.1"}
