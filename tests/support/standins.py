"""Objects shaped as the forwarder's and the cache's metric hooks, for tests of the metrics
collector on its own (a real daemon's are checked over HTTP in tests/integration/)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Upstreams:
    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    inflight: int = 0
    rejected_replies: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    down: int = 0


@dataclass
class Cache:
    entries: int = 0
    hits: int = 0
    misses: int = 0
