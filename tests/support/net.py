"""Free ports on loopback and small DNS client helpers (dnspython and dig) for the tests."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess

import dns.message
import dns.query
import dns.rdatatype

# Ports this process has handed out. A probed port is free again at once, so the kernel may
# offer it twice in a row; a test that asks for two ports (DNS and metrics) must get two.
_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` (DNS listens on both), never one this
    process was given before."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with contextlib.ExitStack() as stack:
            tcp = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            udp = stack.enter_context(socket.socket(family, socket.SOCK_DGRAM))
            try:
                udp.bind((host, port))
            except OSError:
                continue
            if port in _HANDED_OUT:
                continue
            _HANDED_OUT.add(port)
            return int(port)
    raise RuntimeError("no free port")


def ask(host: str, port: int, name: str, rdtype: str = "A", tcp: bool = False,
        timeout: float = 3.0, **make_kwargs: object) -> dns.message.Message:
    """One query with dnspython over UDP (default) or TCP; the reply as a message."""
    query = dns.message.make_query(name, rdtype, **make_kwargs)  # type: ignore[arg-type]
    if tcp:
        return dns.query.tcp(query, host, port=port, timeout=timeout)
    return dns.query.udp(query, host, port=port, timeout=timeout, ignore_trailing=False)


def addresses(reply: dns.message.Message) -> set[str]:
    """Every A/AAAA address in the answer section."""
    return {
        rdata.to_text()
        for rrset in reply.answer
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for rdata in rrset
    }


def recv_exactly(sock: socket.socket, length: int) -> bytes:
    """``length`` bytes from a stream socket; ConnectionError (an OSError) if it closes first."""
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {length} bytes")
        data += chunk
    return data


def recv_framed(sock: socket.socket) -> bytes:
    """One DNS message over TCP: its two-byte length, then that many bytes (RFC 1035 4.2.2)."""
    return recv_exactly(sock, int.from_bytes(recv_exactly(sock, 2), "big"))


def udp_exchange(host: str, port: int, payload: bytes, timeout: float = 1.0) -> bytes | None:
    """Send raw bytes over UDP; the raw reply, or None if none came within ``timeout``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(payload, (host, port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def dig(*args: str) -> str:
    """Run dig with the given arguments and return its output (dig must be installed)."""
    if shutil.which("dig") is None:
        raise RuntimeError("dig is not installed (Debian package dnsutils)")
    done = subprocess.run(["dig", *args], capture_output=True, text=True, timeout=30,
                          check=False)
    return done.stdout
