"""Hosts files (/etc/hosts format) as a registry source, re-read when they change.

Every name on a line is an alias of the first, which is also what PTR answers (as glibc and
dnsmasq do). Names in hosts files belong to no network: every client sees them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from discovery.registry.model import Record, SourcePart, gc_paused
from discovery.registry.registry import Registry

log = logging.getLogger("dockdns.hosts")

# Changes must show within 2 s; a stat() per file per second is negligible and needs no inotify.
POLL_INTERVAL = 1.0


def _address(text: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(IPv4, IPv6) of a hosts-file address, in canonical form; None if it is not one."""
    try:  # the common case, an IPv4 address, is checked by the C library: already canonical
        socket.inet_pton(socket.AF_INET, text)
        return (text,), ()
    except OSError:
        pass
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
    # Written for 100,000-line files: no per-line generator, one fast path per common case.
    for number, raw in enumerate(text.splitlines(), start=1):
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

    def set_paths(self, paths: list[str]) -> None:
        """Switch to another list of files (config reload) and load them at once."""
        self._paths = [Path(p) for p in paths]
        self._stamps.clear()
        self.load()

    def load(self) -> None:
        records: list[Record] = []
        for path in self._paths:
            self._stamps[path] = _stamp(path)
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as err:
                log.warning("hosts file %s unreadable: %s", path, err.strerror or err)
                continue
            found, problems = parse_hosts(text, str(path))
            for problem in problems:
                log.warning("skipped %s", problem)
            records.extend(found)
        self._registry.update(self.name, SourcePart(records=tuple(records)))

    def changed(self) -> bool:
        return any(_stamp(path) != self._stamps.get(path) for path in self._paths)

    async def watch(self) -> None:
        """Re-read all files whenever one of them changes (written, replaced, removed)."""
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            if self.changed():
                log.info("hosts files changed, reloading")
                self.load()
