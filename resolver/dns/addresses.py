"""Questions about client and server addresses, asked by the ACL, the rate limiter, the TCP
listener and the upstream loop filter."""

from __future__ import annotations

import ipaddress
import socket


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
