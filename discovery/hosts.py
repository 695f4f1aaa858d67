"""Hosts files (/etc/hosts format) as a registry source, re-read when they change.

Every name on a line is an alias of the first, which is also what PTR answers (as glibc and
dnsmasq do). Names in hosts files belong to no network: every client sees them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from discovery.model import Record, SourcePart
from discovery.registry import Registry

log = logging.getLogger("dockdns.hosts")

# Changes must show within 2 s; a stat() per file per second is negligible and needs no inotify.
POLL_INTERVAL = 1.0


def parse_hosts(text: str, origin: str) -> tuple[list[Record], list[str]]:
    """Parse hosts-file text; return its records and one message per line that was skipped."""
    records: list[Record] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 2:
            problems.append(f"{origin}:{number}: an address without a name")
            continue
        try:
            address = ipaddress.ip_address(fields[0])
        except ValueError:
            problems.append(f"{origin}:{number}: {fields[0]!r} is not an IP address")
            continue
        names = tuple(dict.fromkeys(name.rstrip(".").lower() for name in fields[1:]))
        v4 = (str(address),) if address.version == 4 else ()
        v6 = (str(address),) if address.version == 6 else ()
        records.append(Record(names=names, ipv4=v4, ipv6=v6, network=None,
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
