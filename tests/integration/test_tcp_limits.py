"""TCP bounds hit on purpose over real sockets: the connection cap, the idle timeout, the
pipeline cap (a client pipelining questions to a slow upstream), and back-pressure on a client
that does not read its replies (throttled, never buffered without bound, never left holding a
connection slot)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rrset

from resolver.serve.tcp import MAX_CONNECTIONS_PER_CLIENT, MAX_PIPELINED
from tests.support.daemon import dockdns
from tests.support.net import addresses, ask, free_port, recv_framed
from tests.support.netns import namespace
from tests.support.proc import vm_rss_kb
from tests.support.scrape import scrape, value


def hosts_file(tmp_path: Path) -> str:
    path = tmp_path / "hosts"
    path.write_text("10.1.2.3 web1\n")
    return str(path)


def query_on(sock: socket.socket) -> dns.message.Message:
    query = dns.message.make_query("web1", "A")
    dns.query.send_tcp(sock, query)
    return dns.query.receive_tcp(sock, expiration=time.time() + 5)[0]


def closed_by_peer(sock: socket.socket, wait: float) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_connections_beyond_the_cap_are_closed(tmp_path: Path) -> None:
    with dockdns("--hosts-file", hosts_file(tmp_path), "--tcp-max", "2") as server:
        first = socket.create_connection((server.host, server.port))
        second = socket.create_connection((server.host, server.port))
        try:
            assert addresses(query_on(first)) == {"10.1.2.3"}
            assert addresses(query_on(second)) == {"10.1.2.3"}
            with socket.create_connection((server.host, server.port)) as third:
                assert closed_by_peer(third, wait=5)
            # The open ones keep working, and UDP is unaffected.
            assert addresses(query_on(first)) == {"10.1.2.3"}
            assert addresses(ask(server.host, server.port, "web1")) == {"10.1.2.3"}
        finally:
            first.close()
            second.close()
        assert "TCP connection limit (2) reached" in server.log()


def test_idle_connections_are_closed(tmp_path: Path) -> None:
    with dockdns("--hosts-file", hosts_file(tmp_path), "--tcp-idle-timeout", "0.5") as server:
        with socket.create_connection((server.host, server.port)) as sock:
            assert addresses(query_on(sock)) == {"10.1.2.3"}
            assert closed_by_peer(sock, wait=10)


# --- back-pressure: what one connection may make the daemon hold ---------------------------


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, message: str = "") -> None:
    """Poll until ``condition`` holds; a generous bound, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} did not happen within {timeout:.0f} s")
        time.sleep(0.05)


def framed(packet: bytes) -> bytes:
    return len(packet).to_bytes(2, "big") + packet


def read_replies(sock: socket.socket, count: int) -> list[bytes]:
    sock.setblocking(True)
    sock.settimeout(30)
    return [recv_framed(sock) for _ in range(count)]


class HoldingUpstream:
    """A name server on loopback (TCP, as dockdns forwards a TCP client's question over TCP):
    names under hold.test get no answer until ``release``; every other name gets 192.0.2.1 at
    once. Counts the held questions it received."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(512)
        self.listener.settimeout(0.1)
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.received = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    def __enter__(self) -> HoldingUpstream:
        self.threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.released.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                query = dns.message.from_wire(recv_framed(conn))
            except OSError:
                return
            if query.question[0].name.to_text().endswith(".hold.test."):
                with self.lock:
                    self.received += 1
                self.released.wait()
            reply = dns.message.make_response(query)
            reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A",
                                                    "192.0.2.1"))
            with contextlib.suppress(OSError):
                conn.sendall(framed(reply.to_wire()))

    def release(self) -> None:
        self.released.set()


def test_a_pipelining_client_gets_64_questions_upstream_and_others_are_served(
        tmp_path: Path) -> None:
    with HoldingUpstream() as upstream, \
            dockdns("--hosts-file", hosts_file(tmp_path), "--upstream", upstream.address,
                    "--tcp-idle-timeout", "60") as server:
        assert server.metrics_port is not None
        ids = list(range(300))
        with socket.create_connection((server.host, server.port)) as greedy:
            # 300 different questions in one go, none of them read back yet.
            burst = b""
            for qid in ids:
                query = dns.message.make_query(f"q{qid}.hold.test", "A")
                query.id = qid
                burst += framed(query.to_wire())
            greedy.sendall(burst)
            wait_for(lambda: upstream.received >= MAX_PIPELINED, message="64 questions upstream")
            # At most 64 of its questions are in flight at any moment (sampled twice around
            # other clients' questions; without the cap all 300 would be).
            assert 1 <= value(scrape(server.metrics_port), "dockdns_upstream_inflight") \
                <= MAX_PIPELINED
            assert addresses(ask(server.host, server.port, "web1")) == {"10.1.2.3"}
            assert addresses(ask(server.host, server.port, "web1", tcp=True)) == {"10.1.2.3"}
            assert addresses(ask(server.host, server.port, "free.test", tcp=True)) == {"192.0.2.1"}
            assert value(scrape(server.metrics_port), "dockdns_upstream_inflight") \
                <= MAX_PIPELINED
            upstream.release()
            replies = [dns.message.from_wire(r) for r in read_replies(greedy, len(ids))]
        # Every question answered once: the connection was throttled, not dropped. (A question
        # held past the daemon's 3.5 s answer budget gets SERVFAIL; the rest the address.)
        assert sorted(r.id for r in replies) == ids
        for reply in replies:
            assert reply.rcode() == dns.rcode.SERVFAIL or addresses(reply) == {"192.0.2.1"}


def many_addresses_hosts(tmp_path: Path) -> str:
    path = tmp_path / "hosts"
    path.write_text("".join(f"10.9.0.{i} many\n" for i in range(1, 101)) + "10.1.2.3 web1\n")
    return str(path)


def send_until_pushed_back(sock: socket.socket, message: bytes,
                           limit: int) -> tuple[int, bytes]:
    """Send ``message`` with IDs 0, 1, ... without reading until the kernel stops taking more
    for a while (the daemon stopped reading); returns how many were started and the unsent tail
    of the last one. Fails if ``limit`` messages go out without any push-back."""
    sock.setblocking(False)
    started, pending, stalls = 0, b"", 0
    while True:
        if not pending:
            if started == limit:
                raise AssertionError(f"{limit} queries sent and the daemon still reads them")
            pending = framed((started % 65536).to_bytes(2, "big") + message[2:])
            started += 1
        try:
            pending = pending[sock.send(pending):]
            stalls = 0
        except BlockingIOError:
            stalls += 1
            if stalls > 40:  # nothing taken for 2 s: pushed back
                return started, pending
            time.sleep(0.05)


def test_a_client_that_does_not_read_is_throttled_not_buffered(tmp_path: Path) -> None:
    query = dns.message.make_query("many", "A").to_wire()
    with dockdns("--hosts-file", many_addresses_hosts(tmp_path),
                 "--tcp-idle-timeout", "120") as server:
        before = vm_rss_kb(server.process.pid)
        with socket.socket() as lazy:
            lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            lazy.connect((server.host, server.port))
            # Each reply (100 addresses, ~1.6 kB) is 50 times its query: without back-pressure
            # the daemon would buffer hundreds of megabytes (or drop the connection).
            started, tail = send_until_pushed_back(lazy, query, limit=1_000_000)
            grown = vm_rss_kb(server.process.pid) - before
            assert grown < 64 * 1024, f"RSS grew by {grown} kB"
            # Others are served meanwhile, over both transports.
            assert addresses(ask(server.host, server.port, "web1")) == {"10.1.2.3"}
            assert addresses(ask(server.host, server.port, "web1", tcp=True)) == {"10.1.2.3"}
            # Once the client reads, every query it sent is answered.
            replies: list[bytes] = []
            reader = threading.Thread(target=lambda: replies.extend(read_replies(lazy, started)))
            reader.start()
            lazy.setblocking(True)
            lazy.sendall(tail)
            reader.join(timeout=120)
        assert len(replies) == started
        assert sorted(int.from_bytes(r[:2], "big") for r in replies) == \
            sorted(qid % 65536 for qid in range(started))
        assert len(dns.message.from_wire(replies[-1]).answer[0]) == 100
        assert server.process.poll() is None


def test_a_client_that_never_reads_is_dropped_after_the_idle_timeout(tmp_path: Path) -> None:
    query = dns.message.make_query("many", "A").to_wire()
    with dockdns("--hosts-file", many_addresses_hosts(tmp_path), "--tcp-max", "1",
                 "--tcp-idle-timeout", "1") as server:
        with socket.socket() as lazy:
            lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            lazy.connect((server.host, server.port))
            # It sends on and reads nothing: pushed back, then (its replies can never drain, so
            # a graceful close would hold the only connection slot for good) reset.
            assert sent_until_reset(lazy, query, seconds=60) > 0
        wait_for(lambda: served(server.host, server.port), timeout=30,
                 message="a new connection served")


def sent_until_reset(sock: socket.socket, message: bytes, seconds: float) -> int:
    """Send ``message`` over and over without reading; the number sent once the peer resets
    the connection. Fails if it has not within ``seconds`` (a generous bound)."""
    sock.setblocking(False)
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        packet = framed((sent % 65536).to_bytes(2, "big") + message[2:])
        while packet and time.monotonic() < deadline:
            try:
                packet = packet[sock.send(packet):]
            except BlockingIOError:
                time.sleep(0.05)
            except (ConnectionResetError, BrokenPipeError):
                return sent
        sent += 1
    raise AssertionError(f"still connected after {seconds:.0f} s and {sent} queries")


def served(host: str, port: int) -> bool:
    """Whether a new TCP connection gets an answer (not closed at once by --tcp-max)."""
    with socket.create_connection((host, port)) as fresh:
        try:
            return addresses(query_on(fresh)) == {"10.1.2.3"}
        except (OSError, EOFError):
            return False


HOLDER = r"""
import json, socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
packet = bytes.fromhex(sys.argv[4])

def answered(sock):
    try:
        sock.sendall(len(packet).to_bytes(2, "big") + packet)
        head = sock.recv(2)
        return len(head) == 2 and len(sock.recv(65535)) > 0
    except OSError:
        return False

def connect():
    sock = socket.create_connection((host, port), timeout=5)
    sock.settimeout(5)
    return sock

held = [connect() for _ in range(count)]
print(json.dumps({"held": sum(answered(s) for s in held), "extra": answered(connect())}),
      flush=True)
sys.stdin.readline()
held.pop().close()
for _ in range(50):  # the daemon notices the close on its next loop turn
    if answered(connect()):
        print(json.dumps({"again": True}), flush=True)
        break
    time.sleep(0.1)
else:
    print(json.dumps({"again": False}), flush=True)
"""


def test_one_address_holds_at_most_its_share_of_connections(tmp_path: Path) -> None:
    packet = dns.message.make_query("web1", "A").to_wire()
    loopback = free_port()
    with namespace(subnet_octet=48) as ns, \
            dockdns("--hosts-file", hosts_file(tmp_path), "--allow", f"{ns.address}/32",
                    "--listen", f"127.0.0.1:{loopback}", host=ns.host_address) as server:
        with subprocess.Popen(
                ["ip", "netns", "exec", ns.name, sys.executable, "-c", HOLDER, server.host,
                 str(server.port), str(MAX_CONNECTIONS_PER_CLIENT), packet.hex()],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
            try:
                assert holder.stdout is not None and holder.stdin is not None
                first = json.loads(holder.stdout.readline())
                # All of its share answered; one more from the same address closed at once.
                assert first == {"held": MAX_CONNECTIONS_PER_CLIENT, "extra": False}
                # Others still get connections.
                with socket.create_connection(("127.0.0.1", loopback)) as other:
                    assert addresses(query_on(other)) == {"10.1.2.3"}
                holder.stdin.write("\n")
                holder.stdin.flush()
                # A slot given back is its to use again.
                assert json.loads(holder.stdout.readline()) == {"again": True}
            finally:
                holder.kill()
        assert f"holds {MAX_CONNECTIONS_PER_CLIENT} connections already" in server.log()
