"""Questions about client and server addresses, asked by the ACL, the rate limiter, the TCP
listener and the upstream loop filter; and ``HostPort``, the address-and-port every listener and
upstream is given as."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass


def is_loopback(address: str) -> bool:
    """127.0.0.0/8 or ::1 (a scope suffix such as ``%lo`` is ignored); False if not an IP."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def is_local_address(address: str) -> bool:
    """Whether ``address`` belongs to this host: only a local address can be bound to."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


@dataclass(frozen=True, slots=True, order=True)
class HostPort:
    host: str
    port: int
    # An upstream spoken to over DNS over TLS (RFC 7858): the name its certificate must hold.
    tls_name: str | None = None

    def __hash__(self) -> int:
        # Written out: the decorator's is interpreted Python even compiled, and upstreams are
        # looked up by HostPort several times a miss (health, counters, socket addresses).
        return hash((self.host, self.port, self.tls_name))

    def __str__(self) -> str:
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return f"tls://{address}#{self.tls_name}" if self.tls_name else address


# RFC 7858: DNS over TLS listens on 853.
DOT_PORT = 853


def parse_upstream(text: str, default_port: int = 53) -> HostPort:
    """``ADDR[:PORT]`` (plain DNS), or ``tls://ADDR[:PORT]#NAME`` (DNS over TLS, port 853 unless
    given; the server's certificate must be valid for NAME)."""
    text = text.strip()
    if not text.lower().startswith("tls://"):
        return parse_hostport(text, default_port)
    address, sep, name = text[len("tls://"):].partition("#")
    name = name.strip().rstrip(".").lower()
    if not sep or not name:
        raise ValueError(f"{text!r}: expected tls://ADDR[:PORT]#NAME, the name its certificate "
                         "is checked against")
    if any(not label or len(label) > 63 for label in name.split(".")):
        raise ValueError(f"{text!r}: {name!r} is not a host name")
    server = parse_hostport(address, DOT_PORT)
    return HostPort(server.host, server.port, name)


def parse_hostport(text: str, default_port: int | None) -> HostPort:
    """``1.2.3.4``, ``1.2.3.4:53``, ``[::1]:5353``, ``::1`` -> HostPort; hosts must be IPs."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"{text!r}: missing ']'")
        host, rest = text[1:close], text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: port must be 1-65535")
        port = int(port_text)
    elif default_port is None:
        raise ValueError(f"{text!r}: a port is required (ADDR:PORT)")
    else:
        port = default_port
    return HostPort(str(address), port)
