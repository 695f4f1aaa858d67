"""The event loop: uvloop where installed, asyncio's own otherwise (as uvicorn's loops/auto.py)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("dockdns")
T = TypeVar("T")

# The cyclic garbage collector's first threshold (CPython's default is 700 allocations). Every
# query waiting on an upstream holds a few dozen objects for its round trip; collected every
# 700 allocations, those in flight outlive the young generations, are promoted to the old one
# and make full collections run again and again (py-spy: 14-18% of the CPU of forwarded misses).
# At 50,000 they are gone before a collection looks at them. What a young collection walks is
# what is still alive: the cache's and memo's newest entries (some twenty objects per answer),
# which stay until evicted. At 400,000 most of those made since the last collection have been
# evicted by the time it runs: under the forwarded-miss benchmark the collector's time fell
# from 620 to 114 ms in ten seconds (6% of a miss's CPU to 1%), each collection still about a
# millisecond. Cycles are rare here (everything in flight is freed by reference counting, and
# tests/unit/resolver/serve/test_udp_cycles.py holds the hot paths to none), so the garbage
# that can wait for a collection is small: at worst 400,000 objects, some 40 MB.
GC_YOUNG_THRESHOLD = 400_000


def run(main: Coroutine[Any, Any, T]) -> T:
    # What was made before the loop runs (modules, settings) lives as long as the process: left
    # out of every collection.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed; running on asyncio's slower default loop")
        return asyncio.run(main)
    runner: T = uvloop.run(main)
    return runner


def loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]
