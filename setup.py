"""The compiled build: the modules every query passes through, compiled to C with mypyc.

The code stays the same Python that mypy checks; mypyc turns its typed classes into C structs
and its calls into C calls, which halves the CPU of a forwarded miss (benchmarks/RESULTS.md).
Everything else (pyproject.toml) is plain setuptools.

``DOCKDNS_COMPILE`` chooses: ``1`` compiles or fails the build, ``0`` installs pure Python, and
unset compiles when mypyc, a C compiler and Python's headers are all there (pure Python, and
one line saying why, otherwise). The pure build answers exactly the same, only slower.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from setuptools import setup

# The per-query path: addresses and parsing, the answer chain, the memo and the client views, the
# registry lookup, the cache, the forwarder with its upstream pool, health and counters, the
# query counters, the batched datagram calls, and the UDP listener. Not resolver/net/libc.py: its
# ctypes structures cannot be compiled, and it only lays them out, once per socket.
COMPILED = [
    "resolver/dns/addresses.py",
    "resolver/dns/wire.py",
    "resolver/dns/upstream_message.py",
    "resolver/answer/chain.py",
    "resolver/answer/handler.py",
    "resolver/answer/local.py",
    "resolver/answer/memo.py",
    "resolver/answer/views.py",
    "resolver/forward/cache.py",
    "resolver/forward/cache_stage.py",
    "resolver/forward/counters.py",
    "resolver/forward/forwarder.py",
    "resolver/forward/health.py",
    "resolver/forward/pool.py",
    "resolver/forward/private_reverse.py",
    "resolver/forward/resolution.py",
    "resolver/forward/special_names.py",
    "resolver/forward/timers.py",
    "resolver/forward/transport.py",
    "resolver/net/mmsg.py",
    "resolver/ops/stats.py",
    "resolver/serve/udp.py",
]


def _why_not() -> str | None:
    """Why this machine cannot compile, or None when it can."""
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc is not installed (pip install mypy)"
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    if shutil.which(compiler.split()[0]) is None:
        return f"no C compiler ({compiler.split()[0]})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "Python's headers are not installed (Debian: python3-dev)"
    return None


def _extensions() -> list[Any]:
    wanted = os.environ.get("DOCKDNS_COMPILE", "")
    if wanted == "0":
        return []
    why = _why_not()
    if why is not None:
        if wanted == "1":
            sys.exit(f"DOCKDNS_COMPILE=1: cannot compile: {why}")
        print(f"dockdns: installing pure Python (slower per query): {why}", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    return list(mypycify(COMPILED, opt_level="3"))


setup(ext_modules=_extensions())
