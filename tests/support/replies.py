"""Queries and upstream replies made with dnspython, for the pure forwarding tests."""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rrset

from resolver.dns import wire
from resolver.dns.upstream_message import upstream_query


def client_query(name: str = "www.example.test", rdtype: str = "A", qid: int = 4321,
                 **kwargs: object) -> wire.Query:
    message = dns.message.make_query(name, rdtype, **kwargs)  # type: ignore[arg-type]
    message.id = qid
    return wire.parse_query(message.to_wire())


def upstream_reply(query: wire.Query, *answers: dns.rrset.RRset,
                   authority: tuple[dns.rrset.RRset, ...] = (),
                   additional: tuple[dns.rrset.RRset, ...] = (),
                   rcode: dns.rcode.Rcode = dns.rcode.NOERROR, flags: int = 0) -> bytes:
    """What an upstream would send for ``query`` (asked with our upstream query)."""
    asked = dns.message.from_wire(upstream_query(query, 777))
    response = dns.message.make_response(asked)
    response.flags |= flags
    response.set_rcode(rcode)
    response.answer.extend(answers)
    response.authority.extend(authority)
    response.additional.extend(additional)
    return response.to_wire(max_size=65535)


def a_records(name: str, count: int, ttl: int = 300) -> dns.rrset.RRset:
    addresses = [f"192.0.2.{i + 1}" if i < 250 else f"198.51.100.{i - 249}"
                 for i in range(count)]
    return dns.rrset.from_text_list(name, ttl, "IN", "A", addresses)


def read(data: bytes) -> dns.message.Message:
    return dns.message.from_wire(data, ignore_trailing=False)
