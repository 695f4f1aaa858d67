"""The stage chain: each stage answers or hands on, in order, in front of the last handler, and
notes its decision on the request's trace when there is one; and ``Pending``, the answer still to
come: callbacks in order on the settling call's stack, one failing callback not stopping the rest,
``mapped`` steps now or later, and ``settled``/``pending_of`` bridging to coroutines."""

from __future__ import annotations

import asyncio

import dns.message
import pytest

from resolver.answer.chain import (
    Answer,
    ForwardedReply,
    Next,
    Pending,
    Request,
    Trace,
    chain,
    mapped,
    pending_of,
    settled,
)
from resolver.answer.views import View
from resolver.dns import wire


class Recorder:
    def __init__(self, name: str, answer_for: str | None = None) -> None:
        self.name = name
        self.answer_for = answer_for
        self.seen: list[str] = []

    def serve(self, request: Request, next: Next) -> Answer:
        self.seen.append(request.query.name)
        if request.query.name == self.answer_for:
            request.note(self.name, "answered")
            return ForwardedReply(b"by " + self.name.encode(), 0, "local")
        request.note(self.name, "handed on")
        return next(request)


def last(request: Request) -> ForwardedReply:
    request.note("last", "nobody answered")
    return ForwardedReply(b"last", 2, "error", failed=True)


def request(name: str, trace: Trace | None) -> Request:
    packet = dns.message.make_query(name, "A").to_wire()
    query = wire.parse_query(packet)
    return Request(query=query, packet=packet, tcp=False, view=View(networks=(), forward=True),
                   max_size=512, key=packet[2:], trace=trace)


def call(handler: Next, request: Request) -> ForwardedReply:
    answer = handler(request)
    assert not isinstance(answer, Pending)  # every stage here answers at once
    return answer


def test_stages_run_in_order_and_stop_at_the_first_answer() -> None:
    first, second = Recorder("first"), Recorder("second", answer_for="b.test")
    handler = chain([first, second], last)
    trace = Trace()
    reply = call(handler, request("b.test", trace))
    assert reply.reply == b"by second" and not reply.failed
    assert trace.steps == [("first", "handed on"), ("second", "answered")]
    trace = Trace()
    reply = call(handler, request("c.test", trace))
    assert reply.failed and reply.reply == b"last"
    assert [step for step, _ in trace.steps] == ["first", "second", "last"]
    assert first.seen == ["b.test", "c.test"]


def test_no_stages_is_the_last_handler_and_no_trace_is_fine() -> None:
    assert call(chain([], last), request("a.test", None)).reply == b"last"
    assert call(chain([Recorder("one")], last), request("a.test", None)).rcode == 2


def test_a_stage_handing_on_to_a_pending_answer_gets_it_when_it_comes() -> None:
    later: Pending[ForwardedReply] = Pending()
    handler = chain([Recorder("first")], lambda request: later)
    answer = handler(request("x.test", None))
    assert answer is later and not later.done()
    seen: list[bytes] = []
    later.then(lambda settled: seen.append(settled.result().reply))
    later.resolve(ForwardedReply(b"upstream", 0, "forward"))
    later.resolve(ForwardedReply(b"twice", 0, "forward"))  # a second settle is ignored
    assert seen == [b"upstream"]


def test_pending_callbacks_run_in_order_and_one_failing_does_not_stop_the_rest() -> None:
    pending: Pending[int] = Pending()
    order: list[str] = []

    def broken(_: Pending[int]) -> None:
        order.append("broken")
        raise RuntimeError("a client's callback failed")

    pending.then(lambda _: order.append("first"))
    pending.then(broken)
    pending.then(lambda _: order.append("third"))
    pending.resolve(1)
    pending.then(lambda _: order.append("after"))  # already settled: runs at once
    assert order == ["first", "broken", "third", "after"]


def test_mapped_applies_now_or_later_and_carries_errors() -> None:
    assert mapped(2, lambda value: value * 10) == 20
    pending: Pending[int] = Pending()
    out = mapped(pending, lambda value: value * 10)
    assert isinstance(out, Pending) and not out.done()
    pending.resolve(3)
    assert out.result() == 30
    failing: Pending[int] = Pending()
    out = mapped(failing, lambda value: value * 10)
    failing.fail(ValueError("upstream gone"))
    with pytest.raises(ValueError, match="upstream gone"):
        out.result()
    inner: Pending[int] = Pending()
    chained = mapped(pending, lambda value: inner)  # a step that is itself still to come
    assert isinstance(chained, Pending) and not chained.done()
    inner.resolve(7)
    assert chained.result() == 7


def test_settled_and_pending_of_bridge_to_coroutines() -> None:
    async def main() -> tuple[int, int, str]:
        async def slow() -> int:
            await asyncio.sleep(0)
            return 5

        behind = pending_of(slow())
        assert not behind.done()
        value = await settled(behind)

        async def broken() -> int:
            raise LookupError("no such name")

        failed = pending_of(broken())
        with pytest.raises(LookupError) as caught:
            await settled(failed)
        return value, await settled(9), str(caught.value)

    assert asyncio.run(main()) == (5, 9, "no such name")


def test_an_unsettled_result_is_an_error() -> None:
    with pytest.raises(asyncio.InvalidStateError):
        Pending[int]().result()
