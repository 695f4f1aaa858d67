"""Loop time of registry changes through the real code: the Docker source (inspect data in),
the registry and a query handler whose memo holds 2,000 answered names. Prints the first load,
one container change (a new address: its records, client entry and PTR), and a burst of 50 stops
gathered by the debounce, at N records; and how many of the 2,000 memoized names are still
memo hits after the changes. Not part of ``make bench``: run it beside an older tree with

    flock /tmp/dockdns-measure.lock python3 -m benchmarks.registry_change 100000 [TREE]

(TREE: another checkout to import dockdns from, for a before/after pair in one run).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any


def inspect(i: int, address: str | None = None) -> tuple[str, dict[str, Any]]:
    cid = f"{i:012x}".rjust(64, "f")[::-1]  # distinct 12-character short IDs
    address = address or f"172.{16 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"
    return cid, {"Id": cid, "Name": f"/c{i}", "State": {"Running": True},
                 "Config": {"Hostname": ""},
                 "NetworkSettings": {"Networks": {"appnet": {"IPAddress": address}}}}


def main(count: int) -> None:
    from dnslib import DNSRecord

    from discovery.docker.events import DockerEvent
    from discovery.docker.source import DockerSource, Listing
    from discovery.registry.model import Network
    from discovery.registry.registry import Registry
    from resolver.answer.handler import QueryHandler
    from resolver.answer.settings import AnswerSettings

    registry = Registry()
    handler = QueryHandler(registry, AnswerSettings(), None)
    source = DockerSource(registry, "unix:///nonexistent.sock")
    started = time.perf_counter()
    source.replace(Listing({"appnet": Network(name="appnet", source="docker")},
                           dict(inspect(i) for i in range(count))))
    print(f"N={count}: first load {time.perf_counter() - started:.2f} s")
    packets = [bytes(DNSRecord.question(f"c{i}", "A").pack()) for i in range(2000)]

    async def warm() -> None:
        for packet in packets:
            await handler.answer(packet, "127.0.0.1", False)

    asyncio.run(warm())
    changes = []
    for k in range(30):
        cid, data = inspect(count - 1 - k, f"10.99.{k}.1")
        started = time.perf_counter()
        source.apply(None, {cid: data})
        changes.append(time.perf_counter() - started)
    hits = sum(1 for p in packets if handler.answer_fast(p, "127.0.0.1", False) is not None)
    print(f"one container change: median {statistics.median(changes) * 1e3:.3f} ms, max "
          f"{max(changes) * 1e3:.3f} ms; memo hits of the 2000 untouched names: {hits}")

    spent: list[float] = []
    flush = getattr(source, "_flush", None)
    if flush is not None:  # the debounced publication: timed where the loop calls it
        def timed() -> None:
            started = time.perf_counter()
            flush()
            spent.append(time.perf_counter() - started)
        source._flush = timed  # type: ignore[method-assign]

    async def stops() -> None:
        generation = registry.snapshot.generation
        started = time.perf_counter()
        for i in range(50):
            source.on_event(DockerEvent("container", "die", inspect(i)[0]))
        events = time.perf_counter() - started
        await asyncio.sleep(0.05)
        print(f"burst of 50 stops: {(events + sum(spent)) * 1e3:.2f} ms of loop time, "
              f"{registry.snapshot.generation - generation} registry changes")

    asyncio.run(stops())


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.path.insert(0, sys.argv[2])
        sys.dont_write_bytecode = True
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
