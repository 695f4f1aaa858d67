"""One hosts file read again and compared with the version before: which records it gained and
which it lost. Runs in a worker thread (source.py): it reads the file, finds the lines that
changed (diff.py) and parses only those (parse.py); the event loop then only hands the delta to
the registry.

A file's state is its bytes as last read well and one entry per line (the line's record, or None
for a blank, comment or bad line), so the records of unchanged lines are kept as they are (the
registry is told nothing about them) and those of removed lines are known without parsing them
again. That costs the file's bytes plus a pointer per line, far less than a line object each.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from discovery.hosts.diff import BLOCK, changed_span, common_prefix, line_blocks
from discovery.hosts.parse import parse_lines
from discovery.registry.model import Record, gc_paused

# The largest file read: ~1.5 million lines of 40 bytes, far beyond any real hosts file, and a
# bound on what one (perhaps sparse or runaway) file can make the daemon hold.
MAX_FILE_BYTES = 64 << 20
# Lines parsed per call: the parse holds the interpreter lock only between calls' bytecodes, but
# each call's join and decode are single C calls, kept to a few hundred kilobytes.
PARSE_BATCH = 4096


@dataclass(frozen=True, slots=True)
class Stamp:
    inode: int
    size: int
    mtime_ns: int


def stamp(path: Path) -> Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return Stamp(st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class FileState:
    """A file as last read well. ``lines`` has one entry per line of ``data.split(b"\\n")``."""

    data: bytes = b""
    lines: list[Record | None] = field(default_factory=lambda: [None])
    stamp: Stamp | None = None
    loaded: bool = False  # read at least once (a missing file counts: it has no records)

    def records(self) -> list[Record]:
        return [record for record in self.lines if record is not None]


@dataclass(slots=True)
class Scan:
    """What reading a file again gave: its new state and the records it gained and lost, or why
    it could not be read (its state is then kept)."""

    path: Path
    base: FileState
    state: FileState | None = None
    added: list[Record] = field(default_factory=list)
    removed: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None  # the file cannot be read (permission, I/O, not a regular file)
    missing: bool = False  # the file does not exist: it has no records


def read(path: Path) -> bytes:
    """The file's bytes. Raises OSError when it cannot be read, or is not a regular file of a
    sane size."""
    # Non-blocking open: a FIFO would otherwise block until a writer came; fstat then sees it.
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device: not a hosts file
            raise OSError(f"not a regular file (mode {stat.filemode(st.st_mode)})")
        if st.st_size > MAX_FILE_BYTES:
            raise OSError(f"{st.st_size} bytes, more than the {MAX_FILE_BYTES} read")
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(f"more than the {MAX_FILE_BYTES} bytes read")
    return data


def _decode(lines: list[bytes]) -> list[str]:
    # Bytes that are not UTF-8 are kept as surrogates, so the log can show them escaped. An LF
    # never falls inside a UTF-8 sequence: decoding lines joined or one by one is the same.
    return b"\n".join(lines).decode("utf-8", "surrogateescape").split("\n")


class _Merge:
    """The changed span's new lines, in order: each line that was also among the old lines
    takes one of their records back; the others are parsed, a batch at a time."""

    def __init__(self, scan: Scan, origin: str, numbered: bool, first: int,
                 kept: dict[bytes, list[Record | None]]) -> None:
        self.scan, self.origin, self.numbered, self.kept = scan, origin, numbered, kept
        self.lines: list[Record | None] = []
        self._run: list[bytes] = []  # new lines not matched, parsed together
        self._next = first + 1  # the line number of the next new line

    def add(self, block: list[bytes]) -> None:
        kept, run, lines = self.kept, self._run, self.lines
        for line in block:
            reuse = kept.get(line)
            if reuse:
                self.flush()
                lines.append(reuse.pop())
            else:
                run.append(line)
                if len(run) >= PARSE_BATCH:
                    self.flush()
            self._next += 1

    def flush(self) -> None:
        run = self._run
        if not run:
            return
        found, skipped = parse_lines(_decode(run), self.origin, self._next - len(run),
                                     self.numbered)
        self.lines.extend(found)
        self.scan.added.extend(record for record in found if record is not None)
        self.scan.problems.extend(skipped)
        run.clear()


def _copy(items: list[Record | None], start: int, stop: int, out: list[Record | None]) -> None:
    for at in range(start, stop, BLOCK):
        out.extend(items[at:min(at + BLOCK, stop)])


def compare(path: Path, base: FileState, data: bytes, now: Stamp | None,
            numbered: bool = False) -> Scan:
    """The scan of ``path`` whose bytes are now ``data``, against its state ``base``."""
    # No cyclic collection meanwhile: a first read makes millions of acyclic objects.
    with gc_paused():
        return _compare(path, base, data, now, numbered)


def _compare(path: Path, base: FileState, data: bytes, now: Stamp | None,
             numbered: bool) -> Scan:
    scan = Scan(path, base)
    if base.loaded and len(data) == len(base.data) and \
            common_prefix(data, base.data) == len(data):  # in blocks, unlike ==
        scan.state = FileState(base.data, base.lines, now, True)
        return scan
    span = changed_span(base.data, data, len(base.lines))
    old_records = base.lines[span.first:span.old_stop]
    # Lines on both sides of the span (a line moved, or equal at its edges) keep their records:
    # the registry hears only of lines that are really new or gone.
    kept: dict[bytes, list[Record | None]] = {}
    at = 0
    for block in line_blocks(base.data, *span.old_bytes):
        for line in block:
            kept.setdefault(line, []).append(old_records[at])
            at += 1
    assert at == len(old_records), (at, len(old_records))
    merge = _Merge(scan, str(path), numbered, span.first, kept)
    for block in line_blocks(data, *span.new_bytes):
        merge.add(block)
    merge.flush()
    scan.removed = [record for records in kept.values() for record in records
                    if record is not None]
    lines: list[Record | None] = []
    _copy(base.lines, 0, span.first, lines)
    lines.extend(merge.lines)
    _copy(base.lines, span.old_stop, len(base.lines), lines)
    scan.state = FileState(data, lines, now, True)
    return scan


def rescan(path: Path, base: FileState, numbered: bool = False) -> Scan:
    """Read ``path`` again and compare it with ``base``."""
    now = stamp(path)  # before reading: a write after it shows as a change at the next poll
    try:
        data = read(path)
    except FileNotFoundError:
        scan = compare(path, base, b"", None, numbered)
        scan.missing = True
        return scan
    except OSError as err:
        return Scan(path, base, error=str(err.strerror or err))
    return compare(path, base, data, now, numbered)
