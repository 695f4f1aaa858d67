"""Hosts files (/etc/hosts format) as a registry source, re-read when they change.

Every name on a line is an alias of the first, which is also what PTR answers (as glibc and
dnsmasq do). Names in hosts files belong to no network: every client sees them.

Whatever bytes a file holds, a line that does not parse (a NUL, bytes that are not ASCII, a
line of megabytes, a name no DNS message can carry) is logged, escaped, and skipped; the rest of
the file is served. A file that cannot be read (permission denied after ``--user``, an I/O
error) keeps its last good records, with a warning, and the source reports itself failing
(``/readyz``) until it reads again; a file that is gone has no records.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from discovery.registry.model import Record, SourcePart, gc_paused
from discovery.registry.registry import Registry

log = logging.getLogger("dockdns.hosts")

# Changes must show within 2 s; a stat() per file per second is negligible and needs no inotify.
POLL_INTERVAL = 1.0
# The longest line read: /etc/hosts lines are tens of characters; one of this size is not a list
# of names but damage, and a name longer than 253 characters could not be asked anyway.
MAX_LINE = 4096
# The largest file read: ~1.5 million lines of 40 bytes, far beyond any real hosts file, and a
# bound on what one (perhaps sparse or runaway) file can make the daemon hold.
MAX_FILE_BYTES = 64 << 20
# Anything but printable ASCII, space and tab (a trailing CR of CRLF files is taken as space).
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\t\r]")
# A label over 63 octets: no DNS message can carry it (its length byte would read as a pointer).
# Empty labels (``a..b``) are harmless: no question can hold one, and no answer writes one.
_LONG_LABEL = re.compile(r"[^.]{64}")


def shown(text: str, limit: int = 80) -> str:
    """Up to ``limit`` characters of a line for the log, every byte outside printable ASCII as
    ``\\DDD`` (the line was decoded with surrogateescape, so these are the file's own bytes)."""
    raw = text[:limit].encode("utf-8", "surrogateescape")
    out = "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x5C else f"\\{b:03d}" for b in raw)
    return out + ("..." if len(text) > limit else "")


def _address(text: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(IPv4, IPv6) of a hosts-file address, in canonical form; None if it is not one."""
    try:  # the common case, an IPv4 address, is checked by the C library: already canonical
        socket.inet_pton(socket.AF_INET, text)
        return (text,), ()
    except OSError:
        pass
    except ValueError:  # a NUL in the text; lines holding one are skipped before this
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return ((str(address),), ()) if address.version == 4 else ((), (str(address),))


def parse_hosts(text: str, origin: str) -> tuple[list[Record], list[str]]:
    """Parse hosts-file text; return its records and one message per line that was skipped."""
    with gc_paused():
        return _parse_hosts(text, origin)


def _parse_hosts(text: str, origin: str) -> tuple[list[Record], list[str]]:
    records: list[Record] = []
    problems: list[str] = []
    # One search over the whole text: the usual file is plain ASCII and skips the per-line check.
    checked = _UNPRINTABLE.search(text) is not None
    # Written for 100,000-line files: no per-line generator, one fast path per common case.
    # Lines end at LF only: splitlines() would also cut at form feeds and other controls, and
    # hand on the pieces of a damaged line as lines of their own.
    for number, raw in enumerate(text.split("\n"), start=1):
        if len(raw) > MAX_LINE:
            problems.append(f"{origin}:{number}: a line of {len(raw)} characters (at most "
                            f"{MAX_LINE}): {shown(raw)}")
            continue
        if checked and _UNPRINTABLE.search(raw):
            problems.append(f"{origin}:{number}: holds bytes other than printable ASCII: "
                            f"{shown(raw)}")
            continue
        fields = (raw.split("#", 1)[0] if "#" in raw else raw).split()
        if not fields:
            continue
        if len(fields) < 2:
            problems.append(f"{origin}:{number}: an address without a name")
            continue
        families = _address(fields[0])
        if families is None:
            problems.append(f"{origin}:{number}: {fields[0]!r} is not an IP address")
            continue
        if len(fields) == 2:
            names: tuple[str, ...] = (fields[1].rstrip(".").lower(),)
        else:
            names = tuple(dict.fromkeys([name.rstrip(".").lower() for name in fields[1:]]))
        bad = next((name for name in names if len(name) > 253 or _LONG_LABEL.search(name)), None)
        if bad is not None:
            problems.append(f"{origin}:{number}: {shown(bad)!r} is not a domain name")
            continue
        records.append(Record(names=names, ipv4=families[0], ipv6=families[1], network=None,
                              ptr=fields[1].rstrip("."), origin=f"{origin}:{number}",
                              source="hosts"))
    return records, problems


@dataclass(frozen=True, slots=True)
class _Stamp:
    inode: int
    size: int
    mtime_ns: int


def _stamp(path: Path) -> _Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return _Stamp(st.st_ino, st.st_size, st.st_mtime_ns)


class HostsSource:
    """Loads the hosts files into the registry and keeps them current."""

    name = "hosts"

    def __init__(self, registry: Registry, paths: list[str]) -> None:
        self._registry = registry
        self._paths = [Path(p) for p in paths]
        self._stamps: dict[Path, _Stamp | None] = {}
        # Each file's records as last read well: kept while the file cannot be read.
        self._records: dict[Path, list[Record]] = {}
        # Why a file cannot be read now (empty: every file reads); /readyz shows it.
        self.errors: dict[Path, str] = {}

    def set_paths(self, paths: list[str]) -> None:
        """Switch to another list of files (config reload) and load them at once."""
        self._paths = [Path(p) for p in paths]
        self._stamps.clear()
        self._records.clear()
        self.errors.clear()
        self.load()

    def _read(self, path: Path) -> str:
        """The file's text (its bytes kept as surrogates where they are not UTF-8). Raises
        OSError when it cannot be read, or is not a regular file of a sane size."""
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the loop; a device, worse
            raise OSError(f"not a regular file (mode {stat.filemode(st.st_mode)})")
        if st.st_size > MAX_FILE_BYTES:
            raise OSError(f"{st.st_size} bytes, more than the {MAX_FILE_BYTES} read")
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise OSError(f"more than the {MAX_FILE_BYTES} bytes read")
        return data.decode("utf-8", "surrogateescape")

    def load(self) -> None:
        records: list[Record] = []
        for path in self._paths:
            self._stamps[path] = _stamp(path)
            try:
                text = self._read(path)
            except FileNotFoundError:
                log.warning("hosts file %s unreadable: it does not exist", path)
                self._records.pop(path, None)
                self.errors.pop(path, None)
                continue
            except OSError as err:
                kept = self._records.get(path, [])
                reason = f"cannot read {path}: {err.strerror or err}"
                self.errors[path] = reason
                log.warning("hosts file %s unreadable: %s; keeping its %d records as last read",
                            path, err.strerror or err, len(kept))
                records.extend(kept)
                continue
            found, problems = parse_hosts(text, str(path))
            for problem in problems:
                log.warning("skipped %s", problem)
            self._records[path] = found
            self.errors.pop(path, None)
            records.extend(found)
        self._registry.update(self.name, SourcePart(records=tuple(records)))

    def changed(self) -> bool:
        # A file that failed to read is tried again at every poll: the fault may be gone.
        return bool(self.errors) or any(_stamp(path) != self._stamps.get(path)
                                        for path in self._paths)

    async def watch(self) -> None:
        """Re-read all files whenever one of them changes (written, replaced, removed)."""
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            if self.changed():
                if not self.errors:
                    log.info("hosts files changed, reloading")
                self.load()
