"""Names, TTLs and SRV services from container labels and environment values, validated.

Everything here comes from whoever started the container, so every value is checked: a bad one
is logged once per container (escaped, cut short) and skipped, and the rest of what that
container declares still counts.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

log = logging.getLogger("dockdns.docker")

MAX_NAME = 253  # octets of a name in presentation form, without the trailing dot
MAX_LABEL = 63
MAX_TTL = 2**31 - 1  # RFC 2181 8
# (container, problem) pairs already logged: a container's entries are rebuilt on every network
# change, and its problems must not be logged again each time. Bounded: past it the oldest are
# forgotten (and may be logged once more), never memory.
WARNED_LIMIT = 10_000
_warned: OrderedDict[tuple[str, str], None] = OrderedDict()


def warn_once(container: str, text: str) -> None:
    key = (container, text)
    if key in _warned:
        return
    _warned[key] = None
    if len(_warned) > WARNED_LIMIT:
        _warned.popitem(last=False)
    log.warning("container %s: %s", container, text)


def shown(value: str) -> str:
    """A value as it may appear in a log line: escaped, at most 100 characters of it."""
    return ascii(value[:100]) + ("..." if len(value) > 100 else "")


def name_problem(name: str, wildcard: bool = False) -> str | None:
    """Why ``name`` (lower case, no trailing dot) cannot be a DNS name, or None. ``wildcard``
    allows one leading ``*.`` label."""
    if not name:
        return "empty name"
    if not name.isascii():
        return "not an ASCII name (invalid UTF-8 or characters outside host names)"
    if len(name) > MAX_NAME:
        return f"name of {len(name)} octets (at most {MAX_NAME})"
    labels = name.split(".")
    for index, label in enumerate(labels):
        if not label:
            return "empty label"
        if len(label) > MAX_LABEL:
            return f"label of {len(label)} octets (at most {MAX_LABEL})"
        if "*" in label and not (wildcard and index == 0 and label == "*" and len(labels) > 1):
            return "'*' is allowed only as a whole first label (*.name)"
        if any(c.isspace() or c in "\\\"()" or not c.isprintable() for c in label):
            return "characters outside host names"
    return None


def names_from(container: str, source: str, text: str, wildcard: bool = True) -> list[str]:
    """The comma-separated names of one label or environment value, the bad ones logged."""
    names: list[str] = []
    for part in text.split(","):
        name = part.strip().rstrip(".").lower()
        if not name and not part.strip() and len(text.split(",")) > 1:
            continue  # "a,,b" or a trailing comma: nothing meant there
        problem = name_problem(name, wildcard)
        if problem is not None:
            warn_once(container, f"{source}: {shown(part)} skipped: {problem}")
            continue
        names.append(name)
    return names


def ttl_from(container: str, source: str, text: str) -> int | None:
    value = text.strip()
    if value.isdigit() and int(value) <= MAX_TTL:
        return int(value)
    warn_once(container, f"{source}: {shown(text)} ignored: not a TTL (0..{MAX_TTL} seconds)")
    return None


def srv_from(container: str, source: str, text: str) -> tuple[tuple[str, int], ...]:
    """``_http._tcp:8080,_metrics._tcp:9100`` -> (("_http._tcp", 8080), ...)."""
    services: dict[tuple[str, int], None] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        service, _, port_text = part.strip().lower().rpartition(":")
        labels = service.split(".")
        port = int(port_text) if port_text.isdigit() else 0
        if (len(labels) != 2 or labels[1] not in ("_tcp", "_udp") or len(labels[0]) < 2
                or not labels[0].startswith("_") or name_problem(service) is not None):
            warn_once(container, f"{source}: {shown(part)} skipped: expected _service._tcp:PORT "
                      "or _service._udp:PORT")
        elif not 0 < port < 65536:
            warn_once(container, f"{source}: {shown(part)} skipped: port must be 1-65535")
        else:
            services[(service, port)] = None
    return tuple(services)
