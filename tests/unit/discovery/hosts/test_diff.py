"""Where two versions of a file differ (pure): checked against the obvious line-by-line
comparison on every pair hypothesis finds, and across blocks on files bigger than one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from discovery.hosts.diff import (
    BLOCK,
    changed_span,
    common_prefix,
    common_suffix,
    count_lines,
    split_lines,
)


def plain_prefix(a: bytes, b: bytes) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def check_span(old: bytes, new: bytes) -> None:
    old_lines, new_lines = old.split(b"\n"), new.split(b"\n")
    span = changed_span(old, new, len(old_lines))
    assert old_lines[:span.first] == new_lines[:span.first]
    assert old_lines[span.old_stop:] == new_lines[span.new_stop:]
    assert len(old_lines) - span.old_stop == len(new_lines) - span.new_stop
    assert split_lines(old, *span.old_bytes) == old_lines[span.first:span.old_stop]
    assert split_lines(new, *span.new_bytes) == new_lines[span.first:span.new_stop]


line = st.sampled_from([b"", b"a", b"b", b"ab", b"a b", b"#", b"10.0.0.1 x", b"\xff"])
text = st.lists(line, max_size=12).map(b"\n".join)


@given(text, text)
@settings(max_examples=500, deadline=None)
def test_the_span_covers_exactly_what_changed(old: bytes, new: bytes) -> None:
    check_span(old, new)
    assert common_prefix(old, new) == plain_prefix(old, new)
    assert common_suffix(old, new, 10**9) == plain_prefix(old[::-1], new[::-1])


@given(text, st.integers(min_value=0, max_value=40), text)
@settings(max_examples=300, deadline=None)
def test_one_edit_gives_a_span_of_that_edit(base: bytes, at: int, inserted: bytes) -> None:
    lines = base.split(b"\n")
    at = min(at, len(lines))
    edited = b"\n".join(lines[:at] + [b"ZZ " + inserted.replace(b"\n", b"")] + lines[at:])
    span = changed_span(base, edited, len(lines))
    check_span(base, edited)
    # The inserted line, and at most the one line it touches at either edge.
    assert span.new_stop - span.first <= 2


def test_blocks_across_a_big_file() -> None:
    lines = [b"10.0.%d.%d host%d.test" % (i >> 8, i & 255, i) for i in range(3 * BLOCK // 20)]
    old = b"\n".join(lines) + b"\n"
    assert len(old) > 2 * BLOCK
    for at in (0, 1, len(lines) // 2, len(lines) - 1):
        new_lines = list(lines)
        new_lines[at] = b"10.9.9.9 changed.test"
        new = b"\n".join(new_lines) + b"\n"
        span = changed_span(old, new, len(lines) + 1)
        assert (span.first, span.old_stop, span.new_stop) == (at, at + 1, at + 1)
        check_span(old, new)
    assert count_lines(old, 0, len(old)) == len(lines)
    assert split_lines(old, 0, len(old)) == [*lines, b""]
    long_line = b"x" * (3 * BLOCK)
    assert split_lines(b"a\n" + long_line + b"\nb", 0, 3 * BLOCK + 4) == [b"a", long_line, b"b"]
