"""UpstreamUnreachable: what the transport raises for an ICMP error, told apart by the pool."""

from __future__ import annotations

import errno
import os

from resolver.dns.addresses import HostPort
from resolver.forward.errors import UpstreamUnreachable
from resolver.forward.pool import UpstreamPool


def test_it_is_an_oserror_that_keeps_the_icmp_errno() -> None:
    error = UpstreamUnreachable(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED))
    assert isinstance(error, OSError)
    assert error.errno == errno.ECONNREFUSED
    assert error.strerror == os.strerror(errno.ECONNREFUSED)


def test_the_pool_counts_it_apart_from_other_failures() -> None:
    pool = UpstreamPool(timeout=1.0)
    server = HostPort("127.0.0.1", 53)
    pool.failed(server, UpstreamUnreachable(errno.ECONNREFUSED, "Connection refused"))
    pool.failed(server, OSError(errno.ENETDOWN, "Network is down"))
    pool.failed(server, None)
    assert pool.requests == {("127.0.0.1:53", "unreachable"): 1, ("127.0.0.1:53", "error"): 1,
                             ("127.0.0.1:53", "timeout"): 1}
