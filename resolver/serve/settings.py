"""The listeners' slice of the configuration: the TCP bounds (``--tcp-max``,
``--tcp-idle-timeout``), whose defaults ``Config`` takes from here."""

from __future__ import annotations

from dataclasses import dataclass

# RFC 7766 6.2.3 recommends closing idle connections after "a few seconds"; 10 s leaves room for
# a stub that reuses its connection across a burst of lookups. A connection whose client reads no
# replies for this long is idle too, and is aborted (its unread replies would never drain).
DEFAULT_IDLE_TIMEOUT = 10.0
# Open connections at once. Each costs a file descriptor and at most ~400 KB (its buffers, see
# resolver/serve/tcp.py); past
# this, new connections are closed at once so that clients holding sockets open cannot exhaust
# file descriptors (1024 is the usual soft limit a daemon gets) or memory.
DEFAULT_MAX_CONNECTIONS = 1024


@dataclass(frozen=True, slots=True)
class TCPSettings:
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT


# The receive and send buffer asked for each UDP listening socket (``--udp-buffer``), in the
# units of SO_RCVBUF and net.core.rmem_max (the kernel reserves twice this for its bookkeeping).
# Measured here (benchmarks/capacity.py): a small query costs 832 bytes of the kernel's receive
# buffer accounting, so the kernel's default (212,992) holds ~190 at most, less while reads are
# still being released; dnsperf with 200 queries outstanding then lost 4-7 of a million
# whenever dockdns was off its core at the wrong moment. 4 MiB holds ~10,000 queries, 80 ms at
# the highest rate measured here, and costs memory only while queries wait in it.
DEFAULT_UDP_BUFFER = 4 << 20
# A smaller ask would be raised to the kernel's floor anyway; a larger one is memory a queue of
# stale queries (clients retry after a second) would waste.
MIN_UDP_BUFFER = 4096
MAX_UDP_BUFFER = 1 << 30
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_buffer_size(value: object) -> int:
    """A buffer size: bytes, or with a K, M or G suffix (powers of 1024); 0 for the kernel's
    default. Raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a size in bytes")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        text = value.strip().lower().removesuffix("ib").removesuffix("b")
        unit = text[-1:] if text[-1:] in _UNITS else ""
        digits = text[: len(text) - len(unit)].strip()
        if not digits.isdigit():
            raise ValueError(f"{value!r} is not a size (bytes, or with K, M or G)")
        size = int(digits) * _UNITS[unit]
    else:
        raise ValueError(f"expected a size in bytes, got {type(value).__name__}")
    if size != 0 and not MIN_UDP_BUFFER <= size <= MAX_UDP_BUFFER:
        raise ValueError(f"{size} is outside {MIN_UDP_BUFFER}..{MAX_UDP_BUFFER} "
                         "(0: the kernel's default)")
    return size
