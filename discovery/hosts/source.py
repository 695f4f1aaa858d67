"""Hosts files (/etc/hosts format) as a registry source, kept current by change.

Each file is polled (a stat() a second); one that changed is read again in a worker thread,
compared with the version before, and only the lines that changed are parsed (scan.py). The
event loop then hands the registry just those records, ``Registry.change(added=, removed=)``:
a one-line edit of a million-line file costs the loop a two-record delta, not a rebuild.

Whatever bytes a file holds, a line that does not parse is logged, escaped, and skipped; the rest
of the file is served. A file that cannot be read (permission denied after ``--user``, an I/O
error) keeps its last good records, with a warning, and the source reports itself failing
(``/readyz``) until it reads again; a file that is gone has no records. While a file has not yet
been read the source reports itself loading.

Origins: in the daemon a record's origin is its file alone (one string shared by every record
of the file), because a line's number changes whenever a line above it is added or removed,
and records whose only change is that number are not changes. ``origin(record)`` derives the
line number when it is asked for (the first line of the file as it is now that gives it). The
one-shot load of ``dockdns check`` and ``dockdns registry`` names every record ``PATH:LINE``,
which is what they show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from discovery.hosts.parse import parse_hosts, parse_lines, shown
from discovery.hosts.scan import FileState, Scan, compare, rescan, stamp
from discovery.registry.model import Record, SourcePart
from discovery.registry.registry import Registry

__all__ = ["HostsSource", "parse_hosts", "shown"]

log = logging.getLogger("dockdns.hosts")

T = TypeVar("T")

# Changes must show within 2 s; a stat() per file per second is negligible and needs no inotify.
POLL_INTERVAL = 1.0
# New files on a reload (SIGHUP) smaller than this together are read at once, on the loop (a
# few milliseconds), so that the reload's answers follow it at once; bigger ones in the thread.
INLINE_BYTES = 64 << 10
# How often the interpreter hands the lock between threads while a file is read in the thread.
SWITCH_INTERVAL = 0.0005
# Records handed to the registry per loop turn: a change costs it ~3 µs a record, so a piece is
# a few milliseconds of loop time and a million-record change (a file replaced by another)
# leaves the loop answering between pieces instead of silent for seconds.
PIECE = 1000
# How much nicer than the loop the worker thread runs (the loop keeps the process's own).
THREAD_NICE = 10


async def in_thread(work: Callable[[], T]) -> T:
    """Run ``work`` in a daemon thread of its own and wait for it. Not an executor: interpreter
    exit joins executor threads, and a shutdown must not wait for a million-line parse.

    Meanwhile the interpreter switches threads every SWITCH_INTERVAL instead of every 5 ms: the
    loop, woken by a query, takes the lock from a busy thread that soon, not after 5 ms each
    time it needs it again (a reply costs it several)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        # Below the loop's priority (Linux nices threads one by one): on a busy machine the
        # kernel runs the loop's thread first when both are ready.
        with contextlib.suppress(AttributeError, OSError):
            me = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, me,
                           min(19, os.getpriority(os.PRIO_PROCESS, me) + THREAD_NICE))
        try:
            result, error = work(), None
        except BaseException as err:  # handed to the waiting coroutine
            result, error = None, err
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, SWITCH_INTERVAL))
    try:
        threading.Thread(target=run, name="dockdns-hosts", daemon=True).start()
        return await done
    finally:
        sys.setswitchinterval(previous)


class HostsSource:
    """Loads the hosts files into the registry and keeps them current by change."""

    name = "hosts"

    def __init__(self, registry: Registry, paths: list[str], numbered: bool = False) -> None:
        self._registry = registry
        self._numbered = numbered
        self._paths = [Path(p) for p in dict.fromkeys(paths)]
        # Each file's bytes as last read well: kept while it cannot be read.
        self._states: dict[Path, FileState] = {path: FileState() for path in self._paths}
        # Files a reload no longer lists whose records are still to be taken out.
        self._dropped: dict[Path, FileState] = {}
        # Why a file cannot be read now (empty: every file reads); /readyz shows it.
        self.errors: dict[Path, str] = {}
        self._missing: set[Path] = set()  # logged as gone (once, not at every poll)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.handing = 0  # records read but not yet all handed to the registry

    @property
    def loading(self) -> list[Path]:
        """Files not read yet: their names are not served yet."""
        return [path for path in self._paths if not self._states[path].loaded]

    def set_paths(self, paths: list[str]) -> None:
        """Switch to another list of files (config reload): files still listed keep their
        records; those no longer listed lose theirs and new ones are read, at once when they
        are small, else by the watcher's thread right away."""
        wanted = [Path(p) for p in dict.fromkeys(paths)]
        for path in self._paths:
            if path not in wanted:
                self._dropped[path] = self._states.pop(path)
                self.errors.pop(path, None)
                self._missing.discard(path)
        for path in wanted:
            if path not in self._states:
                self._states[path] = self._dropped.pop(path) if path in self._dropped \
                    else FileState()
        self._paths = wanted
        new = self.loading
        work = sum(len(state.data) for state in self._dropped.values()) + sum(
            now.size if (now := stamp(path)) else 0 for path in new)
        if (new or self._dropped) and work <= INLINE_BYTES and not self._lock.locked():
            added, removed = self._apply(self._jobs(new)())
            self._registry.change(self.name, added=SourcePart(records=tuple(added)),
                                  removed=SourcePart(records=tuple(removed)))
        self._wake.set()

    def origin(self, record: Record) -> str | None:
        """``PATH:LINE`` of the line ``record`` came from, as the file is now (the first such
        line; equal lines give equal records)."""
        for path, state in self._states.items():
            if str(path) != record.origin.rpartition(":")[0] and str(path) != record.origin:
                continue
            key = (record.ptr or "").encode("utf-8", "surrogateescape")
            for number, line in enumerate(state.data.split(b"\n"), start=1):
                if key in line:
                    found, _ = parse_lines([line.decode("utf-8", "surrogateescape")],
                                           str(path), number, self._numbered)
                    if found[0] == record:
                        return f"{path}:{number}"
        return None

    def _due(self) -> list[Path]:
        # A file that failed to read is tried again at every poll: the fault may be gone.
        return [path for path in self._paths
                if path in self.errors or not self._states[path].loaded
                or stamp(path) != self._states[path].stamp]

    def _jobs(self, paths: list[Path]) -> Callable[[], list[Scan]]:
        """The work of reading ``paths`` again and of taking the dropped files out, to run in
        the thread (or inline): it reads only the bytes captured here, never the source."""
        numbered = self._numbered
        reads = [(path, self._states[path]) for path in paths if path in self._states]
        drops = list(self._dropped.items())

        def work() -> list[Scan]:
            scans = [compare(path, base, b"", None, numbered) for path, base in drops]
            for scan in scans:
                scan.dropped = True
            return scans + [rescan(path, base, numbered) for path, base in reads]
        return work

    async def load(self, paths: list[Path] | None = None) -> None:
        """Read the files (all, or ``paths``) in the worker thread, take out dropped ones;
        hand the registry what changed."""
        async with self._lock:
            work = self._jobs(list(self._paths) if paths is None else paths)
            scans = await in_thread(work)
            added, removed = self._apply(scans)
            del scans  # the old bytes: freed now, not after the pieces
            await self._hand(added, removed)

    async def _hand(self, added: list[Record], removed: list[Record]) -> None:
        """Hand the registry a delta, PIECE records at a time, yielding to the loop between."""
        self.handing = len(added) + len(removed)
        try:
            for start in range(0, max(len(added), len(removed), 1), PIECE):
                if start:
                    await asyncio.sleep(0)
                piece_added = added[start:start + PIECE]
                piece_removed = removed[start:start + PIECE]
                self._registry.change(self.name, added=SourcePart(records=tuple(piece_added)),
                                      removed=SourcePart(records=tuple(piece_removed)))
                self.handing -= len(piece_added) + len(piece_removed)
        finally:
            self.handing = 0

    def _apply(self, scans: list[Scan]) -> tuple[list[Record], list[Record]]:
        """Take the scans' new states (and log what they found); their delta, to hand on."""
        added: list[Record] = []
        removed: list[Record] = []
        for scan in scans:
            path = scan.path
            if scan.dropped:
                if self._dropped.get(path) is scan.base:
                    del self._dropped[path]
                    removed.extend(scan.removed)
                continue
            if self._states.get(path) is not scan.base:
                continue  # superseded (a reload switched files meanwhile): read again later
            if scan.error is not None:
                reason = f"cannot read {path}: {scan.error}"
                if self.errors.get(path) != reason:
                    log.warning("hosts file %s unreadable: %s; keeping its %d records as last "
                                "read", path, scan.error, scan.base.records)
                self.errors[path] = reason
                continue
            self.errors.pop(path, None)
            if scan.missing:
                if path not in self._missing:
                    log.warning("hosts file %s unreadable: it does not exist", path)
                self._missing.add(path)
            else:
                self._missing.discard(path)
            for problem in scan.problems:
                log.warning("skipped %s", problem)
            assert scan.state is not None
            if scan.base.loaded and (scan.added or scan.removed):
                log.info("hosts file %s changed: %d records added, %d removed", path,
                         len(scan.added), len(scan.removed))
            self._states[path] = scan.state
            added.extend(scan.added)
            removed.extend(scan.removed)
        return added, removed

    async def watch(self) -> None:
        """Read a file again whenever it changes (written, replaced, removed, readable again),
        and read new files a reload listed."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL)
            self._wake.clear()
            due = self._due()
            if due or self._dropped:
                await self.load(due)
