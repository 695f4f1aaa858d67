"""The memo: bounded in entries and bytes (starting again when full), and renewing a cached
answer's entry in place once its time has passed, or refusing when it cannot."""

from __future__ import annotations

import itertools

import pytest

from resolver.answer import memo
from resolver.answer.memo import ENTRY_OVERHEAD, NEVER_EXPIRES, Memo, MemoEntry


def entry(reply: bytes, renew: memo.Renewal | None = None, until: float = NEVER_EXPIRES
          ) -> MemoEntry:
    return MemoEntry(until, itertools.repeat(reply), 3, renew)


def test_remember_counts_bytes() -> None:
    table = Memo()
    table.remember(b"key1", entry(b"r" * 10), 10)
    table.remember(b"key22", entry(b"r" * 20), 20)
    assert set(table) == {b"key1", b"key22"}
    assert table.used == 4 + 10 + 5 + 20 + 2 * ENTRY_OVERHEAD
    assert next(table[b"key1"].replies) == b"r" * 10


def test_starts_again_past_the_entry_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "MEMO_LIMIT", 3)
    table = Memo()
    for n in range(3):
        table.remember(b"k%d" % n, entry(b"x"), 1)
    table.remember(b"k3", entry(b"x"), 1)
    assert list(table) == [b"k3"] and table.used == 2 + 1 + ENTRY_OVERHEAD


def test_starts_again_past_the_byte_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "MEMO_BYTES", 2 * (ENTRY_OVERHEAD + 101))
    table = Memo()
    table.remember(b"a", entry(b""), 100)
    table.remember(b"b", entry(b""), 100)
    assert len(table) == 2
    table.remember(b"c", entry(b""), 100)
    assert list(table) == [b"c"]


def test_renewed() -> None:
    asked: list[float] = []

    def renew(now: float) -> tuple[float, bytes] | None:
        asked.append(now)
        return None if now > 100 else (now + 1, b"fresh")

    table = Memo()
    old = entry(b"stale", renew, until=5.0)
    table.remember(b"q", old, 5)
    new = table.renewed(b"q", old, 50.0)
    assert new is not None and table[b"q"] is new
    assert (new.until, next(new.replies), new.slot, new.renew) == (51.0, b"fresh", 3, renew)
    assert table.renewed(b"q", new, 200.0) is None and asked == [50.0, 200.0]
    # A local answer has no renewal: the full path answers it again.
    assert table.renewed(b"q", entry(b"x"), 1.0) is None
