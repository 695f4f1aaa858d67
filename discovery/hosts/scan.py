"""One hosts file read again and compared with the version before: which records it gained and
which it lost. Runs in a worker thread (source.py): it reads the file, finds the lines that
changed (diff.py) and parses only those (parse.py); the event loop then only hands the delta to
the registry.

A file's state is its bytes as last read well, nothing per line: the records of unchanged lines
stay in the registry untouched, and those of removed lines are made again from the old bytes
(a record is a value, and the registry removes by value; in the daemon a record's origin is its
file, not its line, so the same line gives the same record wherever it moved). The source thus
holds 34 bytes a line, and no container of a million entries that the cyclic garbage collector
would walk (stalling the loop) after every change.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from discovery.hosts.diff import changed_span, common_prefix, line_blocks
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
    """A file as last read well."""

    data: bytes = b""
    stamp: Stamp | None = None
    loaded: bool = False  # read at least once (a missing file counts: it has no records)
    records: int = 0  # how many records its lines gave


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
    dropped: bool = False  # a file no longer listed: all its records go


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


class _Batches:
    """Lines to parse, with their line numbers, parsed a batch at a time (each batch's join
    and decode are single C calls, kept to a few hundred kilobytes)."""

    def __init__(self, origin: str, numbered: bool, records: list[Record],
                 problems: list[str] | None) -> None:
        self.origin, self.numbered, self.records, self.problems = \
            origin, numbered, records, problems
        self._run: list[bytes] = []
        self._first = 0  # the line number of the run's first line

    def add(self, line: bytes, number: int) -> None:
        if self._run and (number != self._first + len(self._run)
                          or len(self._run) >= PARSE_BATCH):
            self.flush()
        if not self._run:
            self._first = number
        self._run.append(line)

    def add_block(self, lines: list[bytes], number: int) -> None:
        """``lines`` numbered from ``number`` on, all to be parsed."""
        self.flush()
        for start in range(0, len(lines), PARSE_BATCH):
            self._first = number + start
            self._run = lines[start:start + PARSE_BATCH]
            self.flush()

    def flush(self) -> None:
        if not self._run:
            return
        found, skipped = parse_lines(_decode(self._run), self.origin, self._first,
                                     self.numbered)
        self.records.extend(record for record in found if record is not None)
        if self.problems is not None:
            self.problems.extend(skipped)
        self._run = []


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
        scan.state = FileState(base.data, now, True, base.records)
        return scan
    old = base.data
    span = changed_span(old, data)
    # Lines on both sides of the span (a line moved, or equal at its edges) are no change: the
    # registry hears only of lines that are really new or gone.
    gone: Counter[bytes] = Counter()
    for block in line_blocks(old, *span.old_bytes):
        gone.update(block)
    origin = str(path)
    added = _Batches(origin, numbered, scan.added, scan.problems)
    number = span.first + 1
    # The common case of a first read or lines appended: the old span is one empty line (a
    # file's end), which gives nothing whether it is matched or not; whole blocks are parsed.
    bulk = not gone or (len(gone) == 1 and b"" in gone)
    for block in line_blocks(data, *span.new_bytes):
        if bulk:
            added.add_block(block, number)
            number += len(block)
            continue
        for line in block:
            if gone[line] > 0:
                gone[line] -= 1
            else:
                added.add(line, number)
            number += 1
    added.flush()
    if bulk:
        gone.clear()
    if +gone:
        # What the old lines gave, made again (without their problems: logged when first read).
        removed = _Batches(origin, numbered, scan.removed, None)
        number = span.first + 1
        for block in line_blocks(old, *span.old_bytes):
            for line in block:
                if gone[line] > 0:
                    gone[line] -= 1
                    removed.add(line, number)
                number += 1
        removed.flush()
    scan.state = FileState(data, now, True, base.records + len(scan.added) - len(scan.removed))
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
