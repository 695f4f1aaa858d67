"""Static records: parsed from ``NAME TYPE DATA`` text or a TOML table, turned into registry
records. Pure: no I/O.

Types: A, AAAA, CNAME, TXT, MX, SRV and PTR. Every static record is seen by every client (as a
hosts-file line is). A CNAME is chased inside the registry where its target is known there, and
through the forwarder where it is not (resolver/answer/local.py).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from discovery.docker.labels import MAX_TTL, name_problem
from discovery.registry.model import Record, Snapshot
from resolver.dns import wire

TYPES = ("A", "AAAA", "CNAME", "TXT", "MX", "SRV", "PTR")
TABLE_KEYS = frozenset({"name", "type", "data", "ttl"})
TXT_CHUNK = 255  # a TXT character-string holds at most 255 octets


@dataclass(frozen=True, slots=True, order=True)
class StaticRecord:
    name: str  # lower case, no trailing dot
    rtype: str  # one of TYPES
    data: str  # as written
    ttl: int | None = None

    def __str__(self) -> str:
        return f"{self.name} {self.rtype} {self.data}"


def _name(text: str, what: str) -> str:
    name = text.strip().rstrip(".").lower()
    problem = name_problem(name, wildcard=True)
    if problem is not None:
        raise ValueError(f"{what} {text!r}: {problem}")
    return name


def _reverse_address(name: str) -> str | None:
    """The address a reverse name (or an address written as the name) stands for."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    labels = tuple(label.encode("ascii") for label in name.split("."))
    return wire.reverse_pointer_address(labels)


def _txt_rdata(text: str) -> bytes:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    raw = text.encode("utf-8")
    chunks = [raw[i : i + TXT_CHUNK] for i in range(0, len(raw), TXT_CHUNK)] or [b""]
    return b"".join(bytes([len(chunk)]) + chunk for chunk in chunks)


def _numbers(parts: list[str], count: int, what: str) -> list[int]:
    if len(parts) != count + 1 or not all(p.isdigit() and int(p) < 65536 for p in parts[:count]):
        raise ValueError(f"{what} data must be {count} numbers 0-65535 and a name")
    return [int(p) for p in parts[:count]]


def rdata(record: StaticRecord) -> bytes:
    """The record's data in wire form (raises ValueError when it does not fit its type)."""
    rtype, data = record.rtype, record.data.strip()
    if rtype in ("A", "AAAA"):
        try:
            address = ipaddress.ip_address(data)
        except ValueError:
            raise ValueError(f"{data!r} is not an address") from None
        if (address.version == 4) != (rtype == "A"):
            raise ValueError(f"{data!r} is not an IPv{4 if rtype == 'A' else 6} address")
        return address.packed
    if rtype in ("CNAME", "PTR"):
        return wire.encode_name(_name(data, f"{rtype} target"))
    if rtype == "TXT":
        return _txt_rdata(data)
    parts = data.split()
    if rtype == "MX":
        (preference,) = _numbers(parts, 1, "MX")
        return struct.pack("!H", preference) + wire.encode_name(_name(parts[1], "MX host"))
    priority, weight, port = _numbers(parts, 3, "SRV")
    return wire.srv_rdata(priority, weight, port, _name(parts[3], "SRV target"))


def parse(value: Any) -> StaticRecord:
    """``"NAME TYPE DATA"`` or a table ``{name, type, data, ttl}``."""
    ttl: int | None = None
    if isinstance(value, Mapping):
        unknown = set(value) - TABLE_KEYS
        if unknown:
            raise ValueError(f"unknown key {sorted(unknown)[0]!r} in a record table "
                             "(name, type, data, ttl)")
        if not all(isinstance(value.get(k), str) for k in ("name", "type", "data")):
            raise ValueError("a record table needs name, type and data as strings")
        name, rtype, data = value["name"], value["type"], value["data"]
        if "ttl" in value:
            ttl = value["ttl"]
            if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL:
                raise ValueError(f"ttl {ttl!r} is not 0..{MAX_TTL}")
    elif isinstance(value, str):
        parts = value.split(None, 2)
        if len(parts) != 3:
            raise ValueError(f"{value!r}: expected 'NAME TYPE DATA'")
        name, rtype, data = parts
    else:
        raise ValueError(f"expected 'NAME TYPE DATA' or a table, got {type(value).__name__}")
    rtype = rtype.strip().upper()
    if rtype not in TYPES:
        raise ValueError(f"type {rtype!r} is not one of {', '.join(TYPES)}")
    record = StaticRecord(_name(name, "name"), rtype, data.strip(), ttl)
    if rtype == "PTR" and _reverse_address(record.name) is None:
        raise ValueError(f"PTR name {name!r} is neither an address nor a reverse name")
    try:
        rdata(record)
    except ValueError as err:
        raise ValueError(f"{str(record)!r}: {err}") from None
    return record


def to_records(static: Iterable[StaticRecord], origin: str = "static record") -> tuple[Record,
                                                                                           ...]:
    records: list[Record] = []
    for item in static:
        where = f"{origin} {item}"
        common: dict[str, Any] = {"origin": where, "source": "static", "ttl": item.ttl}
        if item.rtype == "A":
            records.append(Record(names=(item.name,), ipv4=(item.data,), **common))
        elif item.rtype == "AAAA":
            records.append(Record(names=(item.name,),
                                  ipv6=(str(ipaddress.ip_address(item.data)),), **common))
        elif item.rtype == "CNAME":
            records.append(Record(names=(item.name,), cname=_name(item.data, "target"),
                                  **common))
        elif item.rtype == "PTR":
            address = _reverse_address(item.name)
            assert address is not None  # checked by parse
            target = _name(item.data, "target")
            # In the PTR index as a container's address is (found by address, any spelling),
            # and under its name, so that `dockdns registry` lists it.
            records.append(Record(names=(), ipv4=(address,) if ":" not in address else (),
                                  ipv6=(address,) if ":" in address else (), ptr=target,
                                  **common))
        else:
            code = {"TXT": wire.TYPE_TXT, "MX": wire.TYPE_MX, "SRV": wire.TYPE_SRV}[item.rtype]
            records.append(Record(names=(item.name,), data=((code, rdata(item)),), **common))
    return tuple(records)


def conflicts(static: Iterable[StaticRecord], snapshot: Snapshot) -> list[str]:
    """Static names that a container (or a service) already holds on some network."""
    found: list[str] = []
    for item in static:
        if item.rtype == "PTR":
            continue
        networks = sorted(n for n, names in snapshot.by_network.items() if item.name in names)
        if networks:
            holder = snapshot.by_network[networks[0]][item.name].records[0]
            found.append(f"record {str(item)!r} conflicts with the name of {holder.origin} on "
                         f"network {networks[0]}")
    return found
