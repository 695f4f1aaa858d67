"""A query handler kept current by registry changes answers exactly as one made afresh from a
whole build of the same parts, through its memo, after any sequence of source events (the
events of tests/unit/discovery/registry/test_index.py); and a change forgets only the memo
entries of the names it touched: the others are still there, the touched ones are gone.

Names the registry does not hold go to a forwarder stand-in that answers NXDOMAIN, memoized as
a cached negative answer would be: a name that becomes local must not keep that answer. The
forwarder itself is not what is tested here (tests/unit/resolver/answer/test_handler_memo.py
runs the real one against a real upstream)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from dnslib import DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery.registry.model import Record, SourcePart, Touched
from discovery.registry.registry import Registry
from resolver.answer.chain import ForwardedReply, Trace
from resolver.answer.handler import QueryHandler
from resolver.answer.settings import AnswerSettings
from resolver.answer.views import View, touched_names
from resolver.dns import wire
from tests.unit.discovery.registry.test_index import NETWORKS, V4, V6, Model, events, run

ASKED = ("web", "db", "web.n1", "a.b", "x.web", "y.b", "web.n2", "db.n.3", "zzz",
         "_80._tcp.web", "web.docker", "web.n1.docker")
QUESTIONS = [(name, qtype) for name in ASKED for qtype in ("A", "AAAA", "TXT", "CNAME")] + [
    (f"{'.'.join(reversed(a.split('.')))}.in-addr.arpa", "PTR") for a in V4] + [
    ("2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa", "PTR")]
CLIENTS = ("127.0.0.1", "10.0.0.1", "10.0.0.2")
SETTINGS = AnswerSettings(domain="docker")
assert V6


class NxForwarder:
    """Every name it is asked is NXDOMAIN, memoizable for good."""

    def forward(self, query: wire.Query, packet: bytes, tcp: bool, view: View,
                trace: Trace | None = None) -> ForwardedReply:
        reply = wire.error_reply(query, packet, wire.NXDOMAIN)
        return ForwardedReply(reply, wire.NXDOMAIN, "forward", memo_until=math.inf)


PACKETS = {(name, qtype): bytes(DNSRecord.question(name, qtype).pack())
           for name, qtype in QUESTIONS}


LOOP = asyncio.new_event_loop()


def answer(handler: QueryHandler, name: str, qtype: str, client: str) -> tuple[Any, ...]:
    packet = PACKETS[name, qtype]
    reply = handler.answer_fast(packet, client, False)
    if reply is None:
        reply = LOOP.run_until_complete(handler.answer(packet, client, False))
    assert reply is not None
    parsed = DNSRecord.parse(reply)
    return parsed.header.rcode, sorted(str(rr) for rr in parsed.rr)


def memo_keys(handler: QueryHandler) -> dict[int, tuple[View, dict[bytes, set[str]]]]:
    """Per view (by id), each memo key and the names it is listed under."""
    found: dict[int, tuple[View, dict[bytes, set[str]]]] = {}
    for view in handler.views._interned.values():
        keys: dict[bytes, set[str]] = {}
        for memo in (view.memo_udp,):
            for key in memo:
                keys[key] = set()
            for name, held in memo.by_name.items():
                for key in (held,) if isinstance(held, bytes) else held:
                    if key in keys:
                        keys[key].add(name)
        found[id(view)] = (view, keys)
    return found


@given(st.lists(events, min_size=1, max_size=8))
@settings(max_examples=30, deadline=None)
def test_a_kept_handler_answers_as_a_fresh_one(sequence: list[Any]) -> None:
    registry, model = Registry(), Model()
    handler = QueryHandler(registry, SETTINGS, NxForwarder())  # type: ignore[arg-type]
    seen: list[Touched] = []
    registry.watch(lambda snapshot, touched: seen.append(touched))
    for event in sequence:
        before = memo_keys(handler)
        table = handler.views
        seen.clear()
        run(registry, model, event)
        if seen and handler.views is table and not seen[0].wild:
            gone = touched_names(seen[0])
            for view, keys in before.values():
                for key, names in keys.items():
                    # Untouched names keep their entries; touched ones lost them.
                    assert (key in view.memo_udp) == (not names & gone), (names, gone)
        fresh_registry = Registry()
        fresh_registry.snapshot = model.build()
        fresh = QueryHandler(fresh_registry, SETTINGS, NxForwarder())  # type: ignore[arg-type]
        for client in CLIENTS:
            for name, qtype in QUESTIONS:
                expected = answer(fresh, name, qtype, client)
                assert answer(handler, name, qtype, client) == expected, (name, qtype, client)
                assert answer(handler, name, qtype, client) == expected  # from the memo


def test_a_name_that_becomes_local_loses_its_forwarded_answer() -> None:
    registry = Registry()
    handler = QueryHandler(registry, SETTINGS, NxForwarder())  # type: ignore[arg-type]
    registry.change("docker", SourcePart(networks=(NETWORKS[0],)))
    assert answer(handler, "web", "A", "127.0.0.1") == (wire.NXDOMAIN, [])
    assert answer(handler, "db", "A", "127.0.0.1") == (wire.NXDOMAIN, [])
    view = handler.views.for_client("127.0.0.1")
    assert len(view.memo_udp) == 2
    table = handler.views
    registry.change("docker", SourcePart(records=(
        Record(names=("web",), ipv4=("10.0.0.5",), network="n1", ptr="web.n1"),)))
    assert handler.views is table  # no new table: only the name's entries went
    assert list(view.memo_udp.by_name) == ["db"] and len(view.memo_udp) == 1
    rcode, rrs = answer(handler, "web", "A", "127.0.0.1")
    assert rcode == wire.NOERROR and rrs and "10.0.0.5" in rrs[0]
