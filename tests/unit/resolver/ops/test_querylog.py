"""The query log line: name as asked, type, client, transport, rcode, answer count and time,
with the same as structured fields; broken packets logged without a name, drops as DROPPED."""

from __future__ import annotations

import logging

import dns.message
import dns.rcode
import pytest

from resolver.ops.querylog import log_query


def record(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    (found,) = [r for r in caplog.records if r.name == "dockdns.queries"]
    caplog.clear()
    return found


def test_a_logged_query(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dockdns.queries")
    query = dns.message.make_query("Web.Example.", "AAAA")
    reply = dns.message.make_response(query)
    reply.set_rcode(dns.rcode.NXDOMAIN)
    log_query(query.to_wire(), reply.to_wire(), "10.0.0.5", True, 0.0012345)
    line = record(caplog)
    assert line.getMessage() == ("query Web.Example AAAA from 10.0.0.5 over tcp: NXDOMAIN, "
                                 "0 answers, 1.234 ms")
    assert line.fields == {"client": "10.0.0.5", "transport": "tcp",  # type: ignore[attr-defined]
                           "name": "Web.Example", "qtype": "AAAA", "rcode": "NXDOMAIN",
                           "answers": 0, "ms": 1.234}


def test_dropped_and_broken(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dockdns.queries")
    log_query(b"\x00\x01garbage", None, "10.0.0.6", False, 0.0)
    line = record(caplog)
    assert line.fields["rcode"] == "DROPPED" and line.fields["name"] == ""  # type: ignore
    root = dns.message.make_query(".", "NS").to_wire()
    log_query(root, root, "10.0.0.7", False, 0.0)
    assert record(caplog).fields["name"] == "."  # type: ignore[attr-defined]
