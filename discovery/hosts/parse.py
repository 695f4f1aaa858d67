"""Hosts-file lines into records: pure, no I/O.

Every name on a line is an alias of the first, which is also what PTR answers (as glibc and
dnsmasq do). Names in hosts files belong to no network: every client sees them. A line that does
not parse (a NUL, bytes that are not ASCII, a line of megabytes, a name no DNS message can carry)
gives a message and no record.

Written for files of a million lines: what a record holds is shared where it can be (the file's
origin string, the PTR name with the first name when they are equal, the address tuples of
repeated addresses), and records are made without the constructor's keyword handling.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence

from discovery.registry.model import Record, gc_paused

# The longest line read: /etc/hosts lines are tens of characters; one of this size is not a list
# of names but damage, and a name longer than 253 characters could not be asked anyway.
MAX_LINE = 4096
# Anything but printable ASCII, space and tab (a trailing CR of CRLF files is taken as space).
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\t\r]")
# A label over 63 octets: no DNS message can carry it (its length byte would read as a pointer).
# Empty labels (``a..b``) are harmless: no question can hold one, and no answer writes one.
_LONG_LABEL = re.compile(r"[^.]{64}")

Families = tuple[tuple[str, ...], tuple[str, ...]]
# Address tuples already made, so that a blocklist's million ``0.0.0.0`` lines share one. Cleared
# when full: a file of distinct addresses gains nothing and must not grow it without bound.
_ADDRESS_CACHE_SIZE = 4096
_addresses: dict[str, Families] = {}


def shown(text: str, limit: int = 80) -> str:
    """Up to ``limit`` characters of a line for the log, every byte outside printable ASCII as
    ``\\DDD`` (the line was decoded with surrogateescape, so these are the file's own bytes)."""
    raw = text[:limit].encode("utf-8", "surrogateescape")
    out = "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x5C else f"\\{b:03d}" for b in raw)
    return out + ("..." if len(text) > limit else "")


def _address(text: str) -> Families | None:
    """(IPv4, IPv6) of a hosts-file address, in canonical form; None if it is not one."""
    known = _addresses.get(text)
    if known is not None:
        return known
    try:  # the common case, an IPv4 address, is checked by the C library: already canonical
        socket.inet_pton(socket.AF_INET, text)
        families: Families = ((text,), ())
    except OSError:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return None
        families = ((str(address),), ()) if address.version == 4 else ((), (str(address),))
    except ValueError:  # a NUL in the text; lines holding one are skipped before this
        return None
    if len(_addresses) >= _ADDRESS_CACHE_SIZE:
        _addresses.clear()
    _addresses[text] = families
    return families


Maker = Callable[[tuple[str, ...], tuple[str, ...], tuple[str, ...], str, str], Record]


def _maker() -> Maker:
    """A function that makes a hosts record as ``Record(names=..., ipv4=..., ipv6=..., ptr=...,
    origin=..., source="hosts")`` does, faster: a ``Record`` is a tuple of eight slots
    (discovery/registry/values.py; one name or address as the string itself), made here with
    ``tuple.__new__`` and no keyword handling (a third of the parse's time). Checked against
    the constructor once, here; any other layout of ``Record`` gets the constructor itself."""

    def construct(names: tuple[str, ...], ipv4: tuple[str, ...], ipv6: tuple[str, ...],
                  ptr: str, origin: str) -> Record:
        return Record(names=names, ipv4=ipv4, ipv6=ipv6, ptr=ptr, origin=origin,
                      source="hosts")

    if not issubclass(Record, tuple):
        return construct
    new = tuple.__new__

    def make(names: tuple[str, ...], ipv4: tuple[str, ...], ipv6: tuple[str, ...], ptr: str,
             origin: str) -> Record:
        # A single name or address is kept as the string itself (as the constructor does).
        return new(Record, (names[0] if len(names) == 1 else names,
                            ipv4[0] if len(ipv4) == 1 else ipv4,
                            ipv6[0] if len(ipv6) == 1 else ipv6, None, ptr, origin, "hosts",
                            None))

    samples = [(("a", "b"), ("10.0.0.1",), ("fd00::1",), "A", "o"), (("a",), (), (), "a", ""),
               (("a",), ("10.0.0.1", "10.0.0.2"), (), "A", "o")]
    for sample in samples:
        fast, plain = make(*sample), construct(*sample)
        if fast != plain or type(fast) is not type(plain) or any(
                getattr(fast, key) != getattr(plain, key) for key in RECORD_FIELDS):
            return construct
    return make


RECORD_FIELDS = ("names", "ipv4", "ipv6", "network", "ptr", "srv", "srv_target", "origin",
                 "source", "ttl", "srv_names", "clients", "cname", "data")
make_record = _maker()


def parse_lines(lines: Sequence[str], origin: str, first: int = 1,
                numbered: bool = True) -> tuple[list[Record | None], list[str]]:
    """Parse hosts-file lines, the first of them line ``first`` of the file: one entry per line
    (its record, or None for a blank, comment or bad line) and one message per line skipped.

    ``numbered``: each record's origin is ``ORIGIN:LINE``; otherwise ``ORIGIN`` alone (one
    shared string), for a daemon that keeps a file's lines current by change, where a line's
    number moves whenever a line above it changes (the source derives it when asked)."""
    with gc_paused():
        return _parse_lines(lines, origin, first, numbered)


def _parse_lines(lines: Sequence[str], origin: str, first: int,
                 numbered: bool) -> tuple[list[Record | None], list[str]]:
    records: list[Record | None] = []
    append = records.append
    problems: list[str] = []
    make = make_record
    # One search over all the lines (joined by a tab, which the check allows): the usual file is
    # plain ASCII and skips the per-line check.
    checked = _UNPRINTABLE.search(lines[0] if len(lines) == 1 else "\t".join(lines)) is not None
    long = max(map(len, lines), default=0) > MAX_LINE  # likewise, the length check
    # Written for million-line files: no per-line generator, one fast path per common case.
    for number, raw in enumerate(lines, start=first):
        if long and len(raw) > MAX_LINE:
            problems.append(f"{origin}:{number}: a line of {len(raw)} characters (at most "
                            f"{MAX_LINE}): {shown(raw)}")
            append(None)
            continue
        if checked and _UNPRINTABLE.search(raw):
            problems.append(f"{origin}:{number}: holds bytes other than printable ASCII: "
                            f"{shown(raw)}")
            append(None)
            continue
        fields = (raw.split("#", 1)[0] if "#" in raw else raw).split()
        if not fields:
            append(None)
            continue
        count = len(fields)
        if count < 2:
            problems.append(f"{origin}:{number}: an address without a name")
            append(None)
            continue
        families = _address(fields[0])
        if families is None:
            problems.append(f"{origin}:{number}: {fields[0]!r} is not an IP address")
            append(None)
            continue
        ptr = fields[1].rstrip(".")
        low = ptr.lower()
        if low == ptr:
            low = ptr  # one string for both when the name is already lower case
        if count == 2:
            names: tuple[str, ...] = (low,)
            size = len(low)
            bad = low if size > 63 and (size > 253 or _LONG_LABEL.search(low)) else None
        else:
            names = tuple(dict.fromkeys([low, *(name.rstrip(".").lower()
                                                for name in fields[2:])]))
            bad = next((name for name in names
                        if len(name) > 253 or _LONG_LABEL.search(name)), None)
        if bad is not None:
            problems.append(f"{origin}:{number}: {shown(bad)!r} is not a domain name")
            append(None)
            continue
        append(make(names, families[0], families[1], ptr,
                    f"{origin}:{number}" if numbered else origin))
    return records, problems


def parse_hosts(text: str, origin: str) -> tuple[list[Record], list[str]]:
    """Parse hosts-file text; return its records (origins ``ORIGIN:LINE``) and one message per
    line that was skipped. Lines end at LF only: splitlines() would also cut at form feeds and
    other controls, and hand on the pieces of a damaged line as lines of their own."""
    found, problems = parse_lines(text.split("\n"), origin)
    return [record for record in found if record is not None], problems
