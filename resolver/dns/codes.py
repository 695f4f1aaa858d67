"""DNS type and rcode names, both ways: the one table the metrics, the query log, ``check`` and
the counters share (dnslib's tables, with RFC 3597's ``TYPE<n>`` form for the rest)."""

from __future__ import annotations

from dnslib import QTYPE, RCODE

# The types dnslib names (54, ANY and AXFR included) and the rcodes of RFC 6895 (0-11, 16-23):
# the ones a name server is asked for in earnest, which get a counter of their own.
KNOWN_QTYPES = frozenset(int(code) for code in QTYPE.forward)
KNOWN_RCODES = frozenset(range(0, 12)) | frozenset(range(16, 24)) | frozenset(RCODE.forward)


# dnslib 0.9 names type 53 "HIP" (type 55's name); RFC 8162 assigns 53 to SMIMEA.
_NAME_FIXES = {53: "SMIMEA"}
_CODE_FIXES = {"SMIMEA": 53, "HIP": 55}


def qtype_name(qtype: int) -> str:
    fixed = _NAME_FIXES.get(qtype)
    if fixed is not None:
        return fixed
    name = QTYPE.forward.get(qtype)
    return str(name) if name is not None else f"TYPE{qtype}"


def rcode_name(rcode: int) -> str:
    name = RCODE.forward.get(rcode)
    return str(name) if name is not None else f"RCODE{rcode}"


def qtype_code(text: str) -> int | None:
    """``A``, ``aaaa``, ``TYPE65`` -> the type number; None for a name no table holds."""
    upper = text.strip().upper()
    if upper in _CODE_FIXES:
        return _CODE_FIXES[upper]
    code = QTYPE.reverse.get(upper)
    if code is not None:
        return int(code)
    if upper.startswith("TYPE") and upper[4:].isdigit() and int(upper[4:]) < 65536:
        return int(upper[4:])
    return None
