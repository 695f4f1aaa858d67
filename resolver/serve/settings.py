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
