"""The event loop: uvloop where installed, asyncio's own otherwise (as uvicorn's loops/auto.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("dockdns")
T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed; running on asyncio's slower default loop")
        return asyncio.run(main)
    runner: T = uvloop.run(main)
    return runner


def loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]
