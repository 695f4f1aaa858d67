"""The chain of stages a question goes through once the registry has no answer for it.

One call shape for every stage, as CoreDNS's plugins have (``ServeDNS`` handing on with
``NextOrFailure``): ``await stage.serve(request, next)`` either answers or hands the request on to
``next``, the rest of the chain. The forwarder's chain is private-reverse, cache/stale, forward
(resolver/forward/); ``chain()`` links stages in order in front of a last handler that answers
what nobody did. A ``Request`` may carry a trace: each stage notes its decision there, which is
how ``dockdns check`` explains what ``serve`` would do without a copy of its steps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple, Protocol

from resolver.answer.local import LocalAnswer
from resolver.answer.memo import Renewal
from resolver.answer.views import View
from resolver.dns import wire


@dataclass(slots=True)
class Trace:
    """What each step decided for one question, for ``dockdns check``."""

    # (step or stage name, what it decided), in the order they ran.
    steps: list[tuple[str, str]] = field(default_factory=list)
    # The registry's answer, when it had one: its records say where each name came from.
    local: LocalAnswer | None = None

    def note(self, step: str, decision: str) -> None:
        self.steps.append((step, decision))


class ForwardedReply(NamedTuple):
    """What the chain gives back for one client. (A named tuple: one is made per forwarded
    query, and a frozen dataclass's ``__init__`` costs a ``object.__setattr__`` per field.)"""

    reply: bytes  # the whole reply, with the client's ID, fitted to the client's size
    rcode: int
    source: str  # stats.SOURCE_CACHE, SOURCE_FORWARD or SOURCE_LOCAL
    # Until when (time.monotonic) the same query bytes may get these reply bytes again, ID aside;
    # None: never memoize (e.g. a SERVFAIL).
    memo_until: float | None = None
    # How the memo makes these bytes right again after memo_until (a cache hit's TTLs ticked).
    renew: Renewal | None = None
    # True when no stage could get an answer (SERVFAIL or REFUSED made here): the cache stage
    # answers stale instead when it can.
    failed: bool = False


@dataclass(slots=True)
class Request:
    """One client's question on its way down the chain."""

    query: wire.Query
    packet: bytes  # the query as received, for error replies
    tcp: bool
    view: View
    max_size: int  # the largest reply this client takes
    key: bytes  # the question as the cache and in-flight table know it
    trace: Trace | None = None

    def note(self, stage: str, decision: str) -> None:
        if self.trace is not None:
            self.trace.note(stage, decision)


Next = Callable[[Request], Awaitable[ForwardedReply]]


class Stage(Protocol):
    name: str

    async def serve(self, request: Request, next: Next) -> ForwardedReply:
        """Answer ``request``, or hand it on with ``await next(request)``."""
        ...


def chain(stages: Sequence[Stage], last: Next) -> Next:
    """``stages`` in order, each handing on to the next, the last one to ``last``."""
    handler = last
    for stage in reversed(stages):
        handler = partial(stage.serve, next=handler)
    return handler
