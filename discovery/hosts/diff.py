"""Where two versions of a file differ, in whole lines: pure, on bytes.

A file's lines are ``data.split(b"\\n")`` (LF only, as the parser cuts them; a file ending in LF
has an empty last line). Editing one line of a million-line file leaves a long common prefix and
suffix; they are found by comparing the bytes in blocks (C comparisons of 64 KiB, some
milliseconds for 34 MB), never by splitting the file, so the work outside the change is a few
comparisons, not a million lines.

Every step works on bounded slices: this runs in a worker thread beside the event loop, and one C
call over a whole file (a split, a count) would hold the interpreter lock for tens of
milliseconds and stall the loop that long.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

# Bytes compared, counted or split per C call: large enough that the Python around each call
# costs nothing, small enough that one call holds the interpreter lock well under a millisecond.
BLOCK = 1 << 16


def common_prefix(old: bytes, new: bytes) -> int:
    """The length of the longest common prefix of ``old`` and ``new``."""
    limit = min(len(old), len(new))
    start = 0
    while start < limit:
        end = min(start + BLOCK, limit)
        if old[start:end] != new[start:end]:
            # The first difference is in this block: halve it until it is found.
            low, high = start, end  # old[:low] == new[:low]; they differ before ``high``
            while high - low > 1:
                middle = (low + high) // 2
                if old[low:middle] == new[low:middle]:
                    low = middle
                else:
                    high = middle
            return low
        start = end
    return limit


def common_suffix(old: bytes, new: bytes, limit: int) -> int:
    """The length of the longest common suffix of ``old`` and ``new``, at most ``limit``."""
    limit = min(limit, len(old), len(new))
    lo, ln = len(old), len(new)
    done = 0
    while done < limit:
        step = min(BLOCK, limit - done)
        if old[lo - done - step:lo - done] != new[ln - done - step:ln - done]:
            low, high = done, done + step  # the last ``low`` bytes agree; not the last ``high``
            while high - low > 1:
                middle = (low + high) // 2
                if old[lo - middle:lo - low] == new[ln - middle:ln - low]:
                    low = middle
                else:
                    high = middle
            return low
        done += step
    return limit


def count_lines(data: bytes, start: int, end: int) -> int:
    """How many LFs ``data[start:end]`` holds, counted a block at a time."""
    count = 0
    while start < end:
        stop = min(start + BLOCK * 16, end)
        count += data.count(b"\n", start, stop)
        start = stop
    return count


def line_blocks(data: bytes, start: int, end: int) -> Iterator[list[bytes]]:
    """The lines of ``data[start:end].split(b"\\n")``, a block of bytes at a time: a long span
    is never held as one list of line objects."""
    while end - start > BLOCK:
        cut = data.rfind(b"\n", start, start + BLOCK)
        if cut < 0:  # a line longer than a block: up to its end (the parser will skip it)
            cut = data.find(b"\n", start + BLOCK, end)
            if cut < 0:
                break
        yield data[start:cut].split(b"\n")
        start = cut + 1
    yield data[start:end].split(b"\n")


def split_lines(data: bytes, start: int, end: int) -> list[bytes]:
    """``data[start:end].split(b"\\n")``, a block at a time."""
    return [line for block in line_blocks(data, start, end) for line in block]


@dataclass(frozen=True, slots=True)
class Span:
    """The lines that differ: ``old_lines[first:old_stop]`` became ``new_lines[first:new_stop]``
    (indexes into each version's ``split(b"\\n")``); the lines before ``first`` and from the stops
    on are equal. ``old_bytes``/``new_bytes`` are those lines' byte ranges (without the LF that
    ends the last of them), for splitting only the changed part."""

    first: int
    old_stop: int
    new_stop: int
    old_bytes: tuple[int, int]
    new_bytes: tuple[int, int]


def changed_span(old: bytes, new: bytes, old_lines: int | None = None) -> Span:
    """Where ``new`` differs from ``old``, which has ``old_lines`` lines (``old.count(b"\\n") +
    1``) if the caller knows them, else the stops are left at -1 (counting a whole file's lines
    is work the span itself does not need). Not always the smallest span (a line equal on both
    sides of its edges may be inside it); the caller matches equal lines within it."""
    prefix = common_prefix(old, new)
    start = old.rfind(b"\n", 0, prefix) + 1  # the start of the first line not wholly common
    first = count_lines(old, 0, start)
    # The common suffix may not reach back into the lines the prefix kept.
    suffix = common_suffix(old, new, min(len(old), len(new)) - start)
    # Only the lines after an LF inside the common suffix are whole and equal in both.
    tail = count_lines(old, len(old) - suffix, len(old))
    if tail:
        old_end = old.index(b"\n", len(old) - suffix)
        new_end = new.index(b"\n", len(new) - suffix)
    else:
        old_end, new_end = len(old), len(new)
    if old_lines is None:
        return Span(first, -1, -1, (start, old_end), (start, new_end))
    new_lines = first + count_lines(new, start, new_end) + 1 + tail
    return Span(first=first, old_stop=old_lines - tail, new_stop=new_lines - tail,
                old_bytes=(start, old_end), new_bytes=(start, new_end))
