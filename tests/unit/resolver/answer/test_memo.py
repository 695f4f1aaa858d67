"""The memo: bounded in entries and bytes (starting again when full), its byte count always the
bytes of the entries it holds (whatever ``remember``, ``forget`` and ``clear`` did), and renewing
a cached answer's entry in place once its time has passed, or refusing when it cannot."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_forget_gives_back_the_bytes_of_what_it_drops() -> None:
    table = Memo()
    table.remember(b"qa", entry(b""), 10, ("a",))
    table.remember(b"qb", entry(b""), 20, ("b",))
    table.remember(b"qab", entry(b""), 30, ("a", "b"))
    assert table.forget(["a"]) == 2
    assert set(table) == {b"qb"} and table.used == 2 + 20 + ENTRY_OVERHEAD
    assert table.forget(["b"]) == 1  # qab is listed under b too, and already gone
    assert not table and table.used == 0


def test_an_entry_memoized_again_is_counted_once() -> None:
    table = Memo()
    table.remember(b"q", entry(b""), 10)
    table.remember(b"q", entry(b""), 12)  # a forwarded answer again, after its TTL ticked
    assert table.used == 1 + 12 + ENTRY_OVERHEAD


def test_clear_counts_nothing_held() -> None:
    table = Memo()
    table.remember(b"q", entry(b""), 10, ("a",))
    table.clear()  # a wildcard's change: its views start again
    assert table.used == 0 and not table.by_name


def test_registry_changes_never_fill_the_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    # Room for two entries. Each change forgets the entry of the name it touched, so the memo
    # never holds more than one: it must never start again (drop the entry of another name).
    monkeypatch.setattr(memo, "MEMO_BYTES", 2 * (ENTRY_OVERHEAD + 2 + 100))
    table = Memo()
    table.remember(b"qs", entry(b""), 100, ("steady",))
    for change in range(10):
        name = f"n{change}"
        table.remember(b"q%d" % change, entry(b""), 99, (name,))
        table.forget([name])
    assert set(table) == {b"qs"}


KEYS = st.sampled_from([b"k1", b"k2", b"k3", b"k4"])
NAMES = st.lists(st.sampled_from(["a", "b", "c"]), max_size=2)
OPS = st.one_of(st.tuples(st.just("remember"), KEYS, st.integers(0, 500), NAMES),
                st.tuples(st.just("forget"), NAMES),
                st.tuples(st.just("clear")))


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=40))
def test_the_count_is_the_bytes_held(ops: list[tuple[object, ...]]) -> None:
    table = Memo()
    sizes: dict[bytes, int] = {}
    for op in ops:
        if op[0] == "remember":
            key, size, names = op[1], op[2], op[3]
            assert isinstance(key, bytes) and isinstance(size, int) and isinstance(names, list)
            table.remember(key, entry(b""), size, tuple(names))
            sizes[key] = size
        elif op[0] == "forget":
            assert isinstance(op[1], list)
            table.forget(op[1])
        else:
            table.clear()
        assert table.used == sum(len(key) + sizes[key] + ENTRY_OVERHEAD for key in table)
        assert table.used <= memo.MEMO_BYTES and len(table) <= memo.MEMO_LIMIT


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
