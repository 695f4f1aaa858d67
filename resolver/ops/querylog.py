"""The query log (``--log-queries``): one line per query answered on the full path.

Memo hits are not logged, by choice: a hit costs about a microsecond and a log line (formatting,
a write) ten times that, so logging hits would cut the fast path's throughput several times over.
What is logged is every query that needed work: each distinct question per client view at least
once (the first time, and again whenever the registry changes or a forwarded answer expires),
every forwarded or failed query, and every query the memo cannot hold (EDNS options). Counts of
everything, hits included, are in the metrics (``dockdns_queries_total``).
"""

from __future__ import annotations

import logging

from resolver.dns import wire
from resolver.dns.codes import qtype_name, rcode_name

log = logging.getLogger("dockdns.queries")


def _question(packet: bytes) -> tuple[str, str]:
    try:
        query = wire.parse_query(packet)
    except wire.QueryError as err:
        if err.query is None:
            return "", ""
        query = err.query
    except wire.DropQuery:
        return "", ""
    # Escaped (RFC 1035 \\DDD, as dig prints it): a label holding a newline forges no line.
    return query.presentation, qtype_name(query.qtype)


def log_query(packet: bytes, reply: bytes | None, client: str, tcp: bool,
              seconds: float) -> None:
    """Matches ``resolver.answer.handler.QueryLog``; parses again only because logging is on."""
    name, qtype = _question(packet)
    if reply is None:
        rcode, answers = "DROPPED", 0
    else:
        flags, answers = int.from_bytes(reply[2:4], "big"), int.from_bytes(reply[6:8], "big")
        rcode = rcode_name(flags & 0xF)
    fields = {"client": client, "transport": "tcp" if tcp else "udp", "name": name,
              "qtype": qtype, "rcode": rcode, "answers": answers,
              "ms": round(seconds * 1000, 3)}
    log.info("query %s %s from %s over %s: %s, %d answers, %.3f ms", name, qtype, client,
             fields["transport"], rcode, answers, fields["ms"], extra={"fields": fields})
