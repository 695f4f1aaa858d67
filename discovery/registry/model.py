"""The registry model: networks, the records on them, which client addresses are containers, and
the ``Snapshot`` whose indexes the answer logic reads.

The values live in ``values.py``, the indexes and how deltas change them in ``index.py``; this
module is where the rest of dockdns imports them from.
"""

from __future__ import annotations

from discovery.registry.index import PtrHolders, Snapshot, Touched
from discovery.registry.values import (
    SCOPE_LOCAL,
    SCOPE_SWARM,
    Client,
    Group,
    IPNetwork,
    NameSet,
    Network,
    PtrEntry,
    Record,
    SourcePart,
    gc_paused,
)

__all__ = ["SCOPE_LOCAL", "SCOPE_SWARM", "Client", "Group", "IPNetwork", "NameSet", "Network",
           "PtrEntry", "PtrHolders", "Record", "Snapshot", "SourcePart", "Touched", "gc_paused"]
