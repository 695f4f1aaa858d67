"""The chain of stages a question goes through once the registry has no answer for it.

One call shape for every stage, as CoreDNS's plugins have (``ServeDNS`` handing on with
``NextOrFailure``): ``stage.serve(request, next)`` either answers or hands the request on to
``next``, the rest of the chain. The forwarder's chain is special names, private-reverse,
cache/stale, forward (resolver/forward/); ``chain()`` links stages in order in front of a last
handler that answers what nobody did. A ``Request`` may carry a trace: each stage notes its
decision there, which is how ``dockdns check`` explains what ``serve`` would do without a copy
of its steps.

The call is a plain one, not a coroutine: a stage returns its answer (a ``ForwardedReply``) when
it has it, or a ``Pending`` one that is resolved later, when the upstream's reply comes in. A
forwarded miss then costs no Task, no coroutine frames and no loop turn between the upstream's
datagram and the client's reply: profiled, that machinery was a quarter of a miss's cost. The
rare steps that need a coroutine (a TCP or TLS attempt, a CNAME chased out of the registry) run
one behind a ``Pending`` (``pending_of``); async callers ``await settled(answer)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Protocol, TypeAlias, TypeVar, Union

from resolver.answer.local import LocalAnswer
from resolver.answer.memo import Renewal
from resolver.answer.views import View
from resolver.dns import wire

log = logging.getLogger("dockdns.chain")

T = TypeVar("T")
U = TypeVar("U")


class Pending(Generic[T]):
    """A result still to come. Unlike an asyncio future, its callbacks run the moment it is
    settled, in the order they were added, on the settling call's stack: a reply goes out in the
    same callback its upstream datagram came in, with no loop turn and no handle per client."""

    __slots__ = ("_callbacks", "_done", "_value", "_error")

    def __init__(self) -> None:
        self._callbacks: list[Callable[[Pending[T]], None]] = []
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def result(self) -> T:
        """The value, or the error it failed with raised (``asyncio.CancelledError`` when it was
        given up at shutdown)."""
        if not self._done:
            raise asyncio.InvalidStateError("the result is not there yet")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def then(self, callback: Callable[[Pending[T]], None]) -> None:
        """Call ``callback(self)`` once settled (at once if it is already)."""
        if self._done:
            _run(callback, self)
        else:
            self._callbacks.append(callback)

    def resolve(self, value: T) -> None:
        if not self._done:
            self._value = value
            self._settle()

    def fail(self, error: BaseException) -> None:
        if not self._done:
            self._error = error
            self._settle()

    def _settle(self) -> None:
        self._done = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _run(callback, self)

    async def wait(self) -> T:
        if not self._done:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.then(partial(_wake, future))
            await future
        return self.result()


def _run(callback: Callable[[Pending[T]], None], pending: Pending[T]) -> None:
    # One client's callback failing must not keep the others sharing a question from theirs.
    try:
        callback(pending)
    except Exception:
        log.exception("a callback of a pending answer failed")


def _wake(future: asyncio.Future[None], _: Pending[Any]) -> None:
    if not future.done():
        future.set_result(None)


# A value now, or one to come.
Maybe: TypeAlias = Union[T, Pending[T]]  # noqa: UP007 - a generic alias needs Union


def mapped(answer: Maybe[T], step: Callable[[T], U]) -> Maybe[U]:
    """``step`` applied to ``answer``'s value: now if it is there, else once it comes (an error
    from ``step`` or from ``answer`` fails the result)."""
    if not isinstance(answer, Pending):
        return step(answer)
    out: Pending[U] = Pending()
    answer.then(_Then(out, step))
    return out


class _Then(Generic[T, U]):
    """``mapped``'s callback: ``step`` over the value that came, settling ``out``.

    An object rather than a closure: compiled (setup.py), a closure's environment and the
    closure refer to each other, one reference cycle per forwarded question that only the cyclic
    collector frees (profiled: its collections were a tenth of a miss's CPU). Callbacks on a UDP
    question's path are objects like this one or ``functools.partial``s, never closures."""

    __slots__ = ("out", "step")

    def __init__(self, out: Pending[U], step: Callable[[T], U]) -> None:
        self.out = out
        self.step = step

    def __call__(self, settled: Pending[T]) -> None:
        out = self.out
        try:
            value = self.step(settled.result())
        except BaseException as err:  # noqa: BLE001 - the caller's own result carries it
            out.fail(err)
            return
        if isinstance(value, Pending):
            value.then(partial(_forward_to, out))
        else:
            out.resolve(value)


def _forward_to(out: Pending[T], settled: Pending[T]) -> None:
    try:
        value = settled.result()
    except BaseException as err:  # noqa: BLE001 - passed on to whoever waits for ``out``
        out.fail(err)
        return
    out.resolve(value)


async def settled(answer: Maybe[T]) -> T:
    """``answer``'s value, waited for if it is still to come."""
    if isinstance(answer, Pending):
        return await answer.wait()
    return answer


_RUNNING: set[asyncio.Task[Any]] = set()  # tasks behind ``pending_of``, kept from the collector


def pending_of(coroutine: Coroutine[Any, Any, T]) -> Pending[T]:
    """Run ``coroutine`` in a task of its own, its outcome as a ``Pending`` (the rare steps that
    are coroutines: streams, a CNAME chased through the forwarder)."""
    out: Pending[T] = Pending()
    task = asyncio.get_running_loop().create_task(coroutine)
    _RUNNING.add(task)

    def done(task: asyncio.Task[T]) -> None:
        _RUNNING.discard(task)
        if task.cancelled():
            out.fail(asyncio.CancelledError())
        elif task.exception() is not None:
            out.fail(task.exception())  # type: ignore[arg-type]
        else:
            out.resolve(task.result())

    task.add_done_callback(done)
    return out


@dataclass(slots=True)
class Trace:
    """What each step decided for one question, for ``dockdns check``."""

    # (step or stage name, what it decided), in the order they ran.
    steps: list[tuple[str, str]] = field(default_factory=list)
    # The registry's answer, when it had one: its records say where each name came from.
    local: LocalAnswer | None = None

    def note(self, step: str, decision: str) -> None:
        self.steps.append((step, decision))


@dataclass(slots=True)
class ForwardedReply:
    """What the chain gives back for one client. Not frozen: one is made per forwarded query,
    and a frozen dataclass's ``__init__`` costs an ``object.__setattr__`` per field; nothing
    changes one once made. (Compiled, this is a C struct, made without any Python call.)"""

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

    # Written out, not generated: the dataclass decorator's ``__init__`` is interpreted Python
    # even in the compiled build (py-spy and perf: one per miss of each such class), and it
    # leaves one defined in the class alone. Keep it in step with the fields.
    def __init__(self, reply: bytes, rcode: int, source: str, memo_until: float | None = None,
                 renew: Renewal | None = None, failed: bool = False) -> None:
        self.reply = reply
        self.rcode = rcode
        self.source = source
        self.memo_until = memo_until
        self.renew = renew
        self.failed = failed


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

    # Written out, not generated: the dataclass decorator's ``__init__`` is interpreted Python
    # even in the compiled build (py-spy and perf: one per miss of each such class), and it
    # leaves one defined in the class alone. Keep it in step with the fields.
    def __init__(self, query: wire.Query, packet: bytes, tcp: bool, view: View, max_size: int,
                 key: bytes, trace: Trace | None = None) -> None:
        self.query = query
        self.packet = packet
        self.tcp = tcp
        self.view = view
        self.max_size = max_size
        self.key = key
        self.trace = trace

    def note(self, stage: str, decision: str) -> None:
        if self.trace is not None:
            self.trace.note(stage, decision)


# What a stage gives back: its answer, now or to come.
Answer = ForwardedReply | Pending[ForwardedReply]
Next = Callable[[Request], Answer]


class Stage(Protocol):
    name: str

    def serve(self, request: Request, next: Next) -> Answer:
        """Answer ``request``, or hand it on with ``return next(request)`` (or a step mapped
        over what the rest of the chain gives: ``mapped(next(request), step)``)."""
        ...


def chain(stages: Sequence[Stage], last: Next) -> Next:
    """``stages`` in order, each handing on to the next, the last one to ``last``."""
    handler = last
    for stage in reversed(stages):
        handler = partial(stage.serve, next=handler)
    return handler
