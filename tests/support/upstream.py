"""Upstream servers for the forwarding tests, on loopback only.

``dnsmasq(...)`` runs Debian's dnsmasq with fixed records (the real thing a user has upstream).
``FaultServer`` is a small authoritative server written here, on UDP and TCP on one port, whose
misbehaviour is set per name: drop, delay, SERVFAIL/REFUSED, TC over UDP, garbage, and forged
replies (wrong ID, wrong question, wrong source port) sent ahead of the real one. It counts every
query it receives, by name, type and transport.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from tests.support.net import free_port, recv_framed
from tests.support.proc import stop

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
# The address forged replies carry: a client must never see it.
FORGED_ADDRESS = "203.0.113.66"
# How long after a forged reply (or garbage) the real one follows, so that the fake one is
# certainly first on the wire.
FORGERY_LEAD = 0.05


def wait_answering(host: str, port: int, name: str = "probe.invalid", timeout: float = 10.0,
                   process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something answers DNS on ``host:port`` over UDP (any rcode will do)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        with contextlib.suppress(dns.exception.Timeout, OSError):
            dns.query.udp(dns.message.make_query(name, "A"), host, port=port, timeout=0.2)
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answers on {host}:{port}")


@dataclass
class Dnsmasq:
    host: str
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def dnsmasq(*records: str, host: str = "127.0.0.1") -> Iterator[Dnsmasq]:
    """dnsmasq on a free loopback port answering only from ``records`` (dnsmasq options such as
    ``--host-record=a.test,192.0.2.1``); it never forwards anywhere (--no-resolv)."""
    port = free_port(host)
    argv = [DNSMASQ, "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", f"--listen-address={host}", f"--port={port}",
            "--log-queries", *records]
    with tempfile.NamedTemporaryFile("wb", prefix="dnsmasq-", suffix=".log",
                                     delete=False) as log_file:
        log_path = Path(log_file.name)
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        try:
            wait_answering(host, port, process=process)
        except RuntimeError as err:
            raise RuntimeError(f"{err}:\n{log_path.read_text(errors='replace')}") from None
        yield Dnsmasq(host, port, log_path)
    finally:
        stop(process)
        with contextlib.suppress(OSError):
            os.unlink(log_path)


@dataclass(frozen=True)
class Behaviour:
    """What the fault server does with a query (per name, or for every name)."""

    drop: bool = False  # never answer
    delay: float = 0.0  # answer this much later
    rcode: dns.rcode.Rcode | None = None  # this rcode and no records (SERVFAIL, REFUSED)
    truncate_udp: bool = False  # over UDP, TC=1 and no records; over TCP the whole answer
    garbage_first: bool = False  # random bytes from the right address first
    forge: str | None = None  # "id", "question" or "source": a forged reply first
    # (owner, type, rdata) records added to the answer section (NOERROR): a CNAME chain, or a
    # record outside the question's chain that a poisoning upstream slips in
    extra_answers: tuple[tuple[str, str, str], ...] = ()


@dataclass
class QueryLog:
    name: str
    rdtype: str
    transport: str
    source: tuple[str, int] | None = None  # the client's address and port (UDP)


@dataclass
class FaultServer:
    host: str = "127.0.0.1"
    zone: str | None = None  # names under it that are not in records get NXDOMAIN with an SOA
    soa_ttl: int = 60
    records: dict[tuple[str, str], tuple[int, list[str]]] = field(default_factory=dict)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    default: Behaviour = field(default_factory=Behaviour)
    queries: list[QueryLog] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None

    # --- set-up ----------------------------------------------------------------------------

    def add(self, name: str, rdtype: str, ttl: int, *rdatas: str) -> None:
        self.records[(name.lower().rstrip("."), rdtype.upper())] = (ttl, list(rdatas))

    def behave(self, behaviour: Behaviour, name: str | None = None) -> None:
        with self._lock:
            if name is None:
                self.default = behaviour
            else:
                self.behaviours[name.lower().rstrip(".")] = behaviour

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def count(self, name: str, rdtype: str | None = None, transport: str | None = None) -> int:
        name = name.lower().rstrip(".")
        with self._lock:
            return sum(1 for q in self.queries
                       if q.name == name and rdtype in (None, q.rdtype)
                       and transport in (None, q.transport))

    def __enter__(self) -> FaultServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.port = free_port(self.host)
        self._udp = socket.socket(family, socket.SOCK_DGRAM)
        self._udp.bind((self.host, self.port))
        self._udp.settimeout(0.1)
        self._tcp = socket.socket(family, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((self.host, self.port))
        self._tcp.listen(16)
        self._tcp.settimeout(0.1)
        self._spawn(self._serve_udp)
        self._spawn(self._serve_tcp)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop answering and close both sockets (the port then refuses / goes silent)."""
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    # --- answers ---------------------------------------------------------------------------

    def _behaviour(self, name: str) -> Behaviour:
        with self._lock:
            return self.behaviours.get(name, self.default)

    def _soa(self) -> dns.rrset.RRset:
        assert self.zone is not None
        return dns.rrset.from_text(self.zone + ".", self.soa_ttl, "IN", "SOA",
                                   f"ns.{self.zone}. hostmaster.{self.zone}. 1 1200 120 604800 "
                                   f"{self.soa_ttl}")

    def answer(self, query: dns.message.Message, behaviour: Behaviour,
               name_override: str | None = None) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        if behaviour.rcode is not None:
            response.set_rcode(behaviour.rcode)
            return response
        found = self.records.get((name, rdtype))
        known = any(key[0] == name for key in self.records)
        if found is not None:
            ttl, rdatas = found
            owner = name_override or question.name.to_text()
            response.answer.append(dns.rrset.from_text_list(owner, ttl, "IN", rdtype, rdatas))
        elif self.zone is not None and (name == self.zone or name.endswith("." + self.zone)):
            if not known:
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self._soa())
        elif not known and not behaviour.extra_answers:
            response.set_rcode(dns.rcode.REFUSED)
        for extra_owner, extra_type, extra_rdata in behaviour.extra_answers:
            response.answer.append(dns.rrset.from_text(extra_owner, 300, "IN", extra_type,
                                                       extra_rdata))
        return response

    def _log(self, query: dns.message.Message, transport: str,
             source: tuple[str, int] | None = None) -> None:
        question = query.question[0]
        with self._lock:
            self.queries.append(QueryLog(question.name.to_text(omit_final_dot=True).lower(),
                                         dns.rdatatype.to_text(question.rdtype), transport,
                                         source))

    def _serve_udp(self) -> None:
        assert self._udp is not None
        while not self._stop.is_set():
            try:
                data, addr = self._udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue
            if not query.question:
                continue
            self._log(query, "udp", (addr[0], addr[1]))
            behaviour = self._behaviour(
                query.question[0].name.to_text(omit_final_dot=True).lower())
            if behaviour.drop:
                continue
            if behaviour.delay or behaviour.forge or behaviour.garbage_first:
                self._spawn(self._udp_reply, query, behaviour, addr)
            else:
                self._udp_reply(query, behaviour, addr)

    def _udp_reply(self, query: dns.message.Message, behaviour: Behaviour,
                   addr: tuple[str, int]) -> None:
        udp = self._udp
        assert udp is not None
        try:
            if behaviour.delay:
                time.sleep(behaviour.delay)
            if behaviour.garbage_first:
                udp.sendto(query.id.to_bytes(2, "big") + os.urandom(40), addr)
                time.sleep(FORGERY_LEAD)
            if behaviour.forge:
                self._send_forgery(query, behaviour.forge, addr)
                time.sleep(FORGERY_LEAD)
            limit = max(512, query.payload) if query.edns >= 0 else 512
            response = self.answer(query, behaviour)
            # dnspython would raise TooBig past the query's payload; the size is checked here.
            wire = response.to_wire(max_size=65535)
            if behaviour.truncate_udp or len(wire) > limit:
                response.answer.clear()
                response.authority.clear()
                response.additional.clear()
                response.flags |= dns.flags.TC
                wire = response.to_wire(max_size=65535)
            udp.sendto(wire, addr)
        except OSError:
            pass  # the server was stopped meanwhile

    def _send_forgery(self, query: dns.message.Message, kind: str,
                      addr: tuple[str, int]) -> None:
        assert self._udp is not None
        forged = dns.message.make_response(query)
        question = query.question[0]
        owner = question.name
        if kind == "question":
            owner = dns.name.from_text("forged-" + question.name.to_text())
            forged.question = [dns.rrset.RRset(owner, question.rdclass, question.rdtype)]
        if kind == "id":
            forged.id = query.id ^ 0x5A5A
        forged.answer.append(dns.rrset.from_text(owner, 3600, "IN", "A", FORGED_ADDRESS))
        wire = forged.to_wire()
        if kind == "source":
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as other:
                other.bind((self.host, 0))
                other.sendto(wire, addr)
        else:
            self._udp.sendto(wire, addr)

    def _serve_tcp(self) -> None:
        assert self._tcp is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._tcp_connection, conn)

    def _tcp_connection(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn:
            try:
                while not self._stop.is_set():
                    query = dns.message.from_wire(recv_framed(conn))
                    self._log(query, "tcp")
                    behaviour = self._behaviour(
                        query.question[0].name.to_text(omit_final_dot=True).lower())
                    if behaviour.drop:
                        return
                    if behaviour.delay:
                        time.sleep(behaviour.delay)
                    wire = self.answer(query, behaviour).to_wire(max_size=65535)
                    conn.sendall(len(wire).to_bytes(2, "big") + wire)
            except (OSError, dns.exception.DNSException):
                return


