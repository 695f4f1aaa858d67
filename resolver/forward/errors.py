"""The failures of an upstream exchange that callers tell apart by type.

Kept out of the compiled modules (setup.py): mypyc cannot compile a subclass of OSError, and
every module that raises or catches these is free to be compiled.
"""

from __future__ import annotations


class UpstreamUnreachable(OSError):
    """The upstream's host or port answered an attempt with an ICMP error."""
