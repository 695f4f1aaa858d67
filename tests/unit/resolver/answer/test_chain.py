"""The stage chain: each stage answers or hands on, in order, in front of the last handler, and
notes its decision on the request's trace when there is one."""

from __future__ import annotations

import asyncio

import dns.message

from resolver.answer.chain import ForwardedReply, Next, Request, Trace, chain
from resolver.answer.views import View
from resolver.dns import wire


class Recorder:
    def __init__(self, name: str, answer_for: str | None = None) -> None:
        self.name = name
        self.answer_for = answer_for
        self.seen: list[str] = []

    async def serve(self, request: Request, next: Next) -> ForwardedReply:
        self.seen.append(request.query.name)
        if request.query.name == self.answer_for:
            request.note(self.name, "answered")
            return ForwardedReply(b"by " + self.name.encode(), 0, "local")
        request.note(self.name, "handed on")
        return await next(request)


async def last(request: Request) -> ForwardedReply:
    request.note("last", "nobody answered")
    return ForwardedReply(b"last", 2, "error", failed=True)


def request(name: str, trace: Trace | None) -> Request:
    packet = dns.message.make_query(name, "A").to_wire()
    query = wire.parse_query(packet)
    return Request(query=query, packet=packet, tcp=False, view=View(networks=(), forward=True),
                   max_size=512, key=packet[2:], trace=trace)


def call(handler: Next, request: Request) -> ForwardedReply:
    async def go() -> ForwardedReply:
        return await handler(request)

    return asyncio.run(go())


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
