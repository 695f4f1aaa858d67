"""The names the servers hold and the query mixes dnsperf sends: files, generated reproducibly."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

# Every generated name ends in a zone no real resolver holds, so that a stray query is harmless.
LOCAL_ZONE = "bench.test"
FORWARD_ZONE = "fwd.test"
# Query mixes draw this many names (issue 6: "the same 1,000-name query mix").
MIX_SIZE = 1000
SEED = 6


# Forwarded names get addresses of their own, so that an answer shows which side it came from.
FORWARD_OFFSET = 1 << 20


def address(index: int) -> str:
    """A distinct private IPv4 address per index (10.0.0.0/8): answers only, never contacted."""
    return f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"


def forward_address(index: int) -> str:
    return address(index + FORWARD_OFFSET)


def local_name(index: int) -> str:
    return f"host{index}.{LOCAL_ZONE}"


def forward_name(index: int) -> str:
    return f"ext{index}.{FORWARD_ZONE}"


def write_hosts(path: Path, count: int, name: Callable[[int], str] = local_name,
                addr: Callable[[int], str] = address) -> Path:
    """A hosts file with ``count`` names, one per address."""
    with path.open("w") as handle:
        for index in range(count):
            handle.write(f"{addr(index)} {name(index)}\n")
    return path


def mix_indexes(count: int, size: int = MIX_SIZE, seed: int = SEED) -> list[int]:
    """``size`` indexes drawn from ``range(count)``: each at most once when there are enough,
    otherwise every one equally often; shuffled the same way on every run."""
    rng = random.Random(seed)
    if count >= size:
        return rng.sample(range(count), size)
    indexes = [i % count for i in range(size)]
    rng.shuffle(indexes)
    return indexes


def write_queries(path: Path, names: list[str], qtype: str = "A") -> Path:
    """A dnsperf data file: one ``name TYPE`` per line."""
    path.write_text("".join(f"{name} {qtype}\n" for name in names))
    return path
