from __future__ import annotations

import random

from resolver.dns import wire
from resolver.resolved.guard import LoopGuard


def query(name: str, qtype: int = wire.TYPE_A) -> bytes:
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) \
        + b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01"
    return wire.HEADER.pack(0x1234, 0x0100, 1, 0, 0, 0) + question


def guard() -> LoopGuard:
    made = LoopGuard(random.Random(7))
    made.set_zones(["docker", "1.250.10.in-addr.arpa"])
    return made


def test_names_in_owned_zones_get_nxdomain_and_the_apex_nodata() -> None:
    g = guard()
    below = wire.parse_query(query("Nope.DOCKER"))
    reply = g.local_reply(below)
    assert reply is not None and reply[3] & 0x0F == wire.NXDOMAIN and reply[:2] == b"\x12\x34"
    apex = g.local_reply(wire.parse_query(query("docker", wire.TYPE_SOA)))
    assert apex is not None and apex[3] & 0x0F == wire.NOERROR
    assert g.local_reply(wire.parse_query(query("7.1.250.10.in-addr.arpa", wire.TYPE_PTR)))
    assert g.local_reply(wire.parse_query(query("7.2.250.10.in-addr.arpa", wire.TYPE_PTR))) \
        is None
    assert g.local_reply(wire.parse_query(query("docker.example"))) is None
    assert g.local_reply(wire.parse_query(query("notdocker"))) is None


def test_a_marked_question_is_recognized_while_in_flight_only() -> None:
    g = guard()
    original = wire.parse_query(query("loop.example.com"))
    message, marked = g.mark(query("loop.example.com"), original.question)
    sent = wire.parse_query(message)
    # Only the case of the name's letters changed: the same question to any DNS server.
    assert sent.name == original.name and sent.qtype == original.qtype
    assert sent.question == marked != original.question
    assert message[-4:] == original.question[-4:]
    assert g.returned(sent)
    assert not g.returned(original)  # the client's own case is not ours
    g.release(marked)
    assert not g.returned(sent)


def test_the_same_mark_twice_stays_until_both_are_released() -> None:
    g = LoopGuard(random.Random(1))
    asked = wire.parse_query(query("a"))
    marks = []
    for _ in range(40):  # one letter: both cases come up, each several times
        marks.append(g.mark(query("a"), asked.question)[1])
    for mark in marks[:-1]:
        g.release(mark)
    last = wire.parse_query(query("a"))
    survivor = wire.HEADER.pack(1, 0x0100, 1, 0, 0, 0) + marks[-1]
    assert g.returned(wire.parse_query(survivor))
    g.release(marks[-1])
    assert not g.returned(last) and not g.returned(wire.parse_query(survivor))
