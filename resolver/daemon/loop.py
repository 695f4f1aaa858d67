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
# At 50,000 they are gone before a collection looks at them. Cycles are rare here (everything
# in flight is freed by reference counting), so memory does not grow by waiting for them.
GC_YOUNG_THRESHOLD = 50_000


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
