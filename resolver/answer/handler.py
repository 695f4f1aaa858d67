"""From query bytes to reply bytes: the memo fast path and the full path behind it.

``answer_fast`` is the hot path: the client's view, then the ready-made reply for exactly these
query bytes (everything after the ID), then the ID patched in. Everything else (parsing, the
registry, the forwarder, error replies) happens in ``answer_now`` on a miss, which also fills the
memo: its reply at once, or a ``Pending`` one while an upstream is asked. Both are shared by the
UDP and the TCP listener (``answer_served``, and ``answer`` for callers that await).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

from discovery.registry.model import Snapshot, Touched
from discovery.registry.registry import Registry
from resolver.answer import chase
from resolver.answer.chain import (
    Answer,
    ForwardedReply,
    Maybe,
    Pending,
    Trace,
    mapped,
    pending_of,
    settled,
)
from resolver.answer.local import LocalAnswer, answer_local
from resolver.answer.memo import NEVER_EXPIRES, RENEWAL_OVERHEAD, MemoEntry
from resolver.answer.settings import AnswerSettings
from resolver.answer.views import View, ViewTable
from resolver.dns import wire
from resolver.ops.logs import RateLimitedLog
from resolver.ops.stats import SOURCE_ERROR, SOURCE_LOCAL, DurationHistogram, QueryStats
from resolver.resolved.guard import LoopGuard

log = logging.getLogger("dockdns.handler")
limited = RateLimitedLog(log)

# How many orders of a multi-address answer are prebuilt; the memo cycles through them, so each
# response comes in another order without shuffling per query.
ORDERS_PER_ANSWER = 16


# (query packet, reply packet or None, client address, over TCP, seconds taken)
QueryLog = Callable[[bytes, bytes | None, str, bool, float], None]


class Forwarder(Protocol):
    def forward(self, query: wire.Query, packet: bytes, tcp: bool, view: View,
                trace: Trace | None = None) -> Answer:
        """The reply for a question the registry has no answer for: now, or to come."""
        ...


def memo_names(query: wire.Query, domain: str | None,
               local: LocalAnswer | None = None) -> tuple[str, ...]:
    """The registry names a memoized answer to ``query`` depends on, for ``Memo.forget``: the
    name asked, that name without --domain, an SRV question's target name (both ways), a PTR
    question's address, and each CNAME target the answer went through. A change to a name
    ``N`` on network ``NET`` forgets ``N`` and ``N.NET`` (``views.touched_names``): every
    question that can find it has one of those among these."""
    name = query.name
    names = [name]
    if domain and name.endswith("." + domain):
        names.append(name[: -len(domain) - 1])
    if name.startswith("_"):
        parts = name.split(".", 2)
        if len(parts) == 3:
            rest = parts[2]
            names.append(rest)
            if domain and rest.endswith("." + domain):
                names.append(rest[: -len(domain) - 1])
    if query.qtype == wire.TYPE_PTR:
        address = wire.reverse_pointer_address(query.labels)
        if address is not None:
            names.append(address)
    if local is not None:
        names.extend(r.cname.lower() for r in local.records if r.cname)
        if local.chase is not None:
            names.append(local.chase.lower())
    return tuple(names)


def answer_orders(answers: Sequence[bytes], shuffle: bool) -> list[Sequence[bytes]]:
    """The orders replies cycle through: each address leads in turn, the rest shuffled."""
    if not shuffle or len(answers) < 2:
        return [answers]
    base = list(answers)
    random.shuffle(base)
    orders: list[Sequence[bytes]] = []
    for index in range(min(len(base), ORDERS_PER_ANSWER)):
        rest = base[:index] + base[index + 1 :]
        random.shuffle(rest)
        orders.append([base[index], *rest])
    return orders


class QueryHandler:
    def __init__(self, registry: Registry, settings: AnswerSettings,
                 forwarder: Forwarder | None = None, stats: QueryStats | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.forwarder = forwarder
        self.stats = stats or QueryStats()
        self.durations = DurationHistogram()
        # Called after every full-path answer when --log-queries is on
        # (see resolver/ops/querylog.py).
        self.query_log: QueryLog | None = None
        self.clock = clock  # the UDP socket listener's inlined fast path reads it too
        # Set while dockdns is registered with systemd-resolved (resolver/resolved/guard.py).
        self.guard: LoopGuard | None = None
        self.views = self._views_for(registry.snapshot)
        registry.watch(self.on_change)

    @property
    def snapshot(self) -> Snapshot:
        return self.views.snapshot

    def _views_for(self, snapshot: Snapshot) -> ViewTable:
        return ViewTable(snapshot, self.settings.default_bridge_names, self.settings.allow,
                         self.settings.as_container, self.settings.host_names)

    def on_snapshot(self, snapshot: Snapshot) -> None:
        # A new view table drops every memoized answer with the old views: nothing answered
        # from here on can come from before.
        self.views = self._views_for(snapshot)

    def on_change(self, snapshot: Snapshot, touched: Touched) -> None:
        """The registry changed: forget the memo entries and client views it touched (a change
        of the networks, or one too big to list, makes a new table)."""
        if snapshot is not self.views.snapshot or not self.views.changed(touched):
            self.on_snapshot(snapshot)

    def reconfigure(self, settings: AnswerSettings) -> None:
        """New settings (SIGHUP): a new view table only if they changed (a reload that changes
        only records keeps every memo entry the records' change did not touch)."""
        if settings != self.settings:
            self.settings = settings
            self.on_snapshot(self.views.snapshot)

    def answer_fast(self, packet: bytes, client: str, tcp: bool) -> bytes | None:
        """The memoized reply for ``packet``, or None when the full path must run."""
        view = self.views.by_client.get(client)
        if view is None:
            return None
        entry = (view.memo_tcp if tcp else view.memo_udp).get(packet[2:])
        if entry is None:
            return None
        until = entry.until
        if until is not NEVER_EXPIRES:  # local answers never expire
            now = self.clock()
            if until <= now:
                entry = view.renewed(packet[2:], entry, tcp, now)
                if entry is None:
                    return None
        self.stats.counts[entry.slot] += 1
        return packet[:2] + next(entry.replies)

    def answer_now(self, packet: bytes, client: str, tcp: bool,
                   trace: Trace | None = None) -> Maybe[bytes | None]:
        """Parse, answer from the registry or the forwarder, and memoize what may be reused: the
        reply (None: none is sent), or a ``Pending`` one when the forwarder must wait for an
        upstream. With ``trace``, every step notes what it decided there (``dockdns check``)."""
        try:
            query = wire.parse_query(packet)
        except wire.DropQuery:
            self.stats.dropped += 1
            if trace is not None:
                trace.note("parse", "not a query that gets an answer: dropped")
            return None
        except wire.QueryError as err:
            qtype = err.query.qtype if err.query else 0
            self.stats.count(qtype, err.rcode, SOURCE_ERROR)
            if trace is not None:
                trace.note("parse", f"malformed: {err}")
            return wire.error_reply(err.query, packet, err.rcode)

        view = self.views.for_client(client)
        if view.refused:
            slot = self.stats.slot(query.qtype, wire.REFUSED, SOURCE_ERROR)
            self.stats.counts[slot] += 1
            refused = wire.error_reply(query, packet, wire.REFUSED)
            if query.memoizable:  # depends on no name: the client's view is dropped instead
                view.remember(packet[2:],
                              MemoEntry(NEVER_EXPIRES, itertools.repeat(refused[2:]), slot, None),
                              tcp, len(refused))
            if trace is not None:
                trace.note("view", "this client may not ask: REFUSED")
            return refused
        max_size = wire.MAX_TCP_SIZE if tcp else query.max_udp_size
        local = answer_local(self.views.snapshot, view.networks, query,
                             self.settings.ttl, self.settings.domain, view.private, view.host)
        if trace is not None:
            trace.note("registry", "answered here" if local is not None else
                       "not in the registry for this client's networks")
        if local is not None and local.chase is not None and view.forward \
                and self.forwarder is not None:
            if trace is not None:
                trace.local = local
                trace.note("registry", f"a CNAME leaving the registry: {local.chase} is asked "
                                       "of the forward chain")
            return pending_of(self._reply_chased(packet, query, local, view, max_size, tcp,
                                                 trace))
        if local is not None:
            if trace is not None:
                trace.local = local
            return self._reply_local(packet, query, local, view, max_size, tcp)
        if self.guard is not None:
            owned = self._guarded(packet, query, view, tcp)
            if owned is not None:
                return owned or None
        if not view.forward or self.forwarder is None:
            if trace is not None:
                trace.note("forward", "this client is only on internal networks: not "
                              "forwarded (as Docker does), SERVFAIL" if not view.forward
                              else "no forwarder: SERVFAIL")
            self.stats.count(query.qtype, wire.SERVFAIL, SOURCE_ERROR)
            return wire.error_reply(query, packet, wire.SERVFAIL)
        return mapped(self.forwarder.forward(query, packet, tcp, view, trace),
                      partial(self._reply_forwarded, packet, query, view, tcp))

    def _reply_forwarded(self, packet: bytes, query: wire.Query, view: View, tcp: bool,
                         forwarded: ForwardedReply) -> bytes:
        """Count and memoize what the forwarder gave; its reply."""
        slot = self.stats.slot(query.qtype, forwarded.rcode, forwarded.source)
        self.stats.counts[slot] += 1
        if forwarded.memo_until is not None and query.memoizable:
            view.remember(packet[2:], MemoEntry(forwarded.memo_until,
                                                itertools.repeat(forwarded.reply[2:]),
                                                self.stats.memo_slot(slot), forwarded.renew),
                          tcp, len(forwarded.reply) + (RENEWAL_OVERHEAD if forwarded.renew else 0),
                          memo_names(query, self.settings.domain))
        return forwarded.reply

    def _guarded(self, packet: bytes, query: wire.Query, view: View, tcp: bool) -> bytes | None:
        """With resolved: b"" (drop) for our own query come back, the local reply for a name in a
        zone dockdns owns (never forwarded: resolved would send it straight back), else None."""
        assert self.guard is not None
        if self.guard.returned(query):
            self.stats.dropped += 1
            limited.warning("dropped a query for %s that dockdns itself forwarded: it came back "
                            "(a forwarding loop: is dockdns also one of resolved's global or "
                            "default-route servers?)",
                            query.presentation.lower())
            return b""
        reply = self.guard.local_reply(query)
        if reply is None:
            return None
        rcode = reply[3] & 0x0F
        slot = self.stats.slot(query.qtype, rcode, SOURCE_LOCAL)
        self.stats.counts[slot] += 1
        if query.memoizable:
            view.remember(packet[2:], MemoEntry(NEVER_EXPIRES, itertools.repeat(reply[2:]),
                                                self.stats.memo_slot(slot), None), tcp, len(reply),
                          memo_names(query, self.settings.domain))
        return packet[:2] + reply[2:]

    def _reply_local(self, packet: bytes, query: wire.Query, local: LocalAnswer, view: View,
                     max_size: int, tcp: bool) -> bytes:
        replies = [
            wire.build_reply(query, local.rcode, list(order), max_size, list(local.additional))
            for order in answer_orders(local.answers, local.shuffle)
        ]
        slot = self.stats.slot(query.qtype, local.rcode, SOURCE_LOCAL)
        self.stats.counts[slot] += 1
        if query.memoizable:
            view.remember(packet[2:], MemoEntry(NEVER_EXPIRES,
                                                itertools.cycle([r[2:] for r in replies]),
                                                self.stats.memo_slot(slot), None), tcp,
                          sum(len(r) for r in replies), memo_names(query, self.settings.domain,
                                                                   local))
        return replies[0]

    async def _reply_chased(self, packet: bytes, query: wire.Query, local: LocalAnswer,
                            view: View, max_size: int, tcp: bool,
                            trace: Trace | None = None) -> bytes:
        """A static CNAME whose chain leaves the registry: the rest is asked of the forwarder
        (cache included) and the reply is the chain followed by what the upstream said."""
        assert self.forwarder is not None and local.chase is not None
        chased_packet = chase.chase_query(local.chase, query.qtype)
        forwarded = await settled(self.forwarder.forward(
            wire.parse_query(chased_packet), chased_packet, tcp, view, trace))
        rcode, tail = chase.chased_answers(forwarded.reply)
        reply = wire.build_reply(query, rcode, [*local.answers, *tail], max_size)
        slot = self.stats.slot(query.qtype, rcode, forwarded.source)
        self.stats.counts[slot] += 1
        if forwarded.memo_until is not None and query.memoizable:
            # Valid as long as the forwarded part is; its renewal would render only that part.
            view.remember(packet[2:], MemoEntry(forwarded.memo_until, itertools.repeat(reply[2:]),
                                                self.stats.memo_slot(slot), None), tcp, len(reply),
                          memo_names(query, self.settings.domain, local))
        return reply

    async def answer(self, packet: bytes, client: str, tcp: bool) -> bytes | None:
        """``answer_served``, waited for."""
        return await settled(self.answer_served(packet, client, tcp))

    def answer_served(self, packet: bytes, client: str, tcp: bool) -> Maybe[bytes | None]:
        """Both paths, and the guarantee that nothing escapes: an internal error is SERVFAIL
        (given up at shutdown, too); every full-path answer is timed and, with --log-queries,
        logged."""
        reply = self.answer_fast(packet, client, tcp)
        if reply is not None:
            return reply
        started = time.perf_counter()
        try:
            answer = self.answer_now(packet, client, tcp)
        except Exception:
            answer = self._internal_error(packet, client)
        if isinstance(answer, Pending):
            out: Pending[bytes | None] = Pending()
            # A partial, not a closure: see chain._Then.
            answer.then(partial(self._came, out, packet, client, tcp, started))
            return out
        return self._served(packet, answer, client, tcp, started)

    def _came(self, out: Pending[bytes | None], packet: bytes, client: str, tcp: bool,
              started: float, settled: Pending[bytes | None]) -> None:
        try:
            reply = settled.result()
        except asyncio.CancelledError:
            reply = servfail_for(packet)  # shutdown gave up waiting for it
        except Exception:
            reply = self._internal_error(packet, client)
        out.resolve(self._served(packet, reply, client, tcp, started))

    def _internal_error(self, packet: bytes, client: str) -> bytes | None:
        self.stats.internal_errors += 1
        log.exception("internal error answering a query from %s", client)
        return servfail_for(packet)

    def _served(self, packet: bytes, reply: bytes | None, client: str, tcp: bool,
                started: float) -> bytes | None:
        elapsed = time.perf_counter() - started
        self.durations.observe(elapsed)
        if self.query_log is not None:
            self.query_log(packet, reply, client, tcp, elapsed)
        return reply


def servfail_for(packet: bytes) -> bytes | None:
    """SERVFAIL with whatever of the query parses; None if it does not even have a header."""
    if len(packet) < wire.HEADER.size:
        return None
    try:
        query: wire.Query | None = wire.parse_query(packet)
    except (wire.DropQuery, wire.QueryError):
        query = None
    return wire.error_reply(query, packet, wire.SERVFAIL)
