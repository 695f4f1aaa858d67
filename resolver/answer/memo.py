"""The memo: ready-made wire replies per view, keyed by the query's bytes after its ID.

This module owns the entry's layout (``MemoEntry``); the handler fills the memo on the full path,
and the UDP and TCP listeners read it on the fast path by the entry's field names.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from resolver.ops.logs import RateLimitedLog

log = logging.getLogger("dockdns.views")
limited = RateLimitedLog(log)

# A local answer's ``until``: it is right until the registry changes a name it depends on
# (which forgets it: ``Memo.forget``).
NEVER_EXPIRES = math.inf

# Makes a memo entry's reply right again once the time it was valid until has passed (a cached
# answer's TTLs ticked down a second): for ``now``, (valid until, the reply minus its ID), or None
# when the answer may not be given from the memo any more (it expired).
Renewal = Callable[[float], tuple[float, bytes] | None]

# The memo holds one entry per distinct query (bytes after the ID) per view and transport.
# Well-behaved clients ask a few thousand distinct questions; the cap only bounds a flood of
# unique names, after which the memo simply starts again (a rebuild costs one full-path answer
# per name). 100,000 entries of a typical answer take ~35 MB (measured: ~350 bytes an entry).
MEMO_LIMIT = 100_000
# The same memo's bytes: keys and replies (every prebuilt order) plus ENTRY_OVERHEAD each. The
# entry cap alone would let large answers (up to 64 KiB over TCP, from an upstream a client
# picks by the names it asks) multiply ~35 MB two-hundredfold; this keeps a full memo of any
# answers near the size a full memo of typical ones has.
MEMO_BYTES = 32 << 20
# What an entry costs beyond its key's and replies' bytes: two bytes headers, the entry tuple,
# the reply iterator and the dict slot (measured ~230 bytes with CPython 3.11), its slot in the
# index by name (~100 bytes: a name string and a dict slot, a list when a name has several), and
# its charge in ``Memo.charged`` (~70 bytes: a dict slot and an int).
ENTRY_OVERHEAD = 400
# What a renewable entry (a cached answer) costs beyond that: the renewal and prefetch objects
# and the request and parsed query they keep to render it again (~800 bytes, CPython 3.11).
RENEWAL_OVERHEAD = 800


class MemoEntry(NamedTuple):
    """One memoized answer. A NamedTuple: read on the hot path, where a field costs one index."""

    until: float  # monotonic time it stays valid until (NEVER_EXPIRES for local answers)
    replies: Iterator[bytes]  # the next wire reply minus its ID, in turn
    slot: int  # the QueryStats slot it is counted under
    renew: Renewal | None  # how to renew it once past its time, if it can be


class Memo(dict[bytes, MemoEntry]):
    """One view's memo for one transport, bounded in entries and bytes, with an index of its
    keys by the names their answers depend on (kept by ``remember``, on the full path: the hit
    path reads the dict and nothing else), so that a registry change forgets only those."""

    __slots__ = ("used", "charged", "by_name")

    def __init__(self) -> None:
        super().__init__()
        # The bytes of the entries held, counted against MEMO_BYTES: always the sum of
        # ``charged``, whatever came and went (``remember``, ``forget``, ``clear``).
        self.used = 0
        # key -> what its entry was counted as (key, replies and ENTRY_OVERHEAD), so that an
        # entry dropped or replaced takes exactly its own bytes off ``used``. Without it, each
        # registry change's ``forget`` left its entries' bytes counted, and a memo of a busy
        # registry believed itself full and started again long before it was.
        self.charged: dict[bytes, int] = {}
        # name -> the key (or keys) of the entries that depend on it. A key forgotten through
        # one of its names may still be listed under another: forgetting that one later drops
        # at most an entry memoized again since, which the full path then answers once more.
        self.by_name: dict[str, bytes | list[bytes]] = {}

    def remember(self, key: bytes, entry: MemoEntry, size: int,
                 names: tuple[str, ...] = ()) -> None:
        """Keep ``entry`` for the query bytes ``key``; ``size`` is the bytes of its replies;
        ``names`` the names it depends on (``forget`` of any of them drops it)."""
        cost = len(key) + size + ENTRY_OVERHEAD
        charged = self.charged
        replaced = charged.get(key, 0)  # an entry memoized again under its key (a TTL ticked)
        used = self.used - replaced + cost
        if (len(self) >= MEMO_LIMIT and not replaced) or used > MEMO_BYTES:
            limited.log(logging.DEBUG, "memo full (%d entries, %d bytes); starting it again",
                        len(self), used)
            self.clear()
            used = cost
        if key not in self:
            by_name = self.by_name
            for name in names:
                held = by_name.get(name)
                if held is None:
                    by_name[name] = key
                elif type(held) is bytes:
                    if held != key:
                        by_name[name] = [held, key]
                elif key not in held:
                    held.append(key)  # type: ignore[union-attr]
        self[key] = entry
        charged[key] = cost
        self.used = used

    def forget(self, names: Iterable[str]) -> int:
        """Drop the entries that depend on any of ``names``; how many went."""
        by_name = self.by_name
        if not by_name:
            return 0
        charged = self.charged
        gone = freed = 0
        for name in names:
            held = by_name.pop(name, None)
            if held is None:
                continue
            for key in (held,) if type(held) is bytes else held:
                if self.pop(key, None) is not None:  # type: ignore[arg-type]
                    gone += 1
                    freed += charged.pop(key, 0)  # type: ignore[arg-type]
        self.used -= freed
        return gone

    def clear(self) -> None:
        super().clear()
        self.by_name.clear()
        self.charged.clear()
        self.used = 0

    def renewed(self, key: bytes, entry: MemoEntry, now: float) -> MemoEntry | None:
        """``entry`` (found under ``key``, past its time) made right for ``now`` and kept in its
        place, or None when it cannot be renewed and the full path must answer.

        Cached answers go past their time every second, when their TTLs tick: renewing re-renders
        the reply from the cache entry it came from, which costs a fraction of the full path
        (no parse, no task, no cache lookup), so a name asked all the time stays a memo hit. The
        reply keeps its size, so the memo's byte count stands."""
        renew = entry.renew
        if renew is None:
            return None
        renewal = renew(now)
        if renewal is None:
            return None
        until, reply = renewal
        entry = MemoEntry(until, itertools.repeat(reply), entry.slot, renew)
        self[key] = entry
        return entry
