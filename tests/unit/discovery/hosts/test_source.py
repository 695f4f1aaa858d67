"""The hosts source over real files and a real registry: each change reaches the registry as
only the lines that changed (a subscriber of the registry counts the deltas), and what it then
holds equals a fresh parse of the files."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from discovery.hosts.parse import parse_lines
from discovery.hosts.source import PIECE, HostsSource, in_thread
from discovery.registry.model import Record, Snapshot, SourcePart
from discovery.registry.registry import NOTHING, Registry


class CountingRegistry(Registry):
    """The real registry, noting the size of every delta it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.deltas: list[tuple[int, int]] = []

    def change(self, source: str, added: SourcePart = NOTHING,
               removed: SourcePart = NOTHING) -> bool:
        if added.records or removed.records:
            self.deltas.append((len(added.records), len(removed.records)))
        return super().change(source, added, removed)


def fresh(*paths: Path) -> Counter[Record]:
    """What a freshly started daemon would hold for these files."""
    records: Counter[Record] = Counter()
    for path in paths:
        if path.exists():
            text = path.read_bytes().decode("utf-8", "surrogateescape")
            found, _ = parse_lines(text.split("\n"), str(path), numbered=False)
            records.update(r for r in found if r is not None)
    return records


def held(registry: Registry) -> Counter[Record]:
    part = registry.part("hosts")
    return Counter(part.records if part else ())


def answers(registry: Registry) -> dict[str, tuple[str, ...]]:
    return {name: tuple(sorted(s.ipv4 + s.ipv6))
            for name, s in registry.snapshot.global_names.items()}


def fresh_answers(*paths: Path) -> dict[str, tuple[str, ...]]:
    snapshot = Snapshot.build(1, [SourcePart(records=tuple(fresh(*paths).elements()))])
    return {name: tuple(sorted(s.ipv4 + s.ipv6)) for name, s in snapshot.global_names.items()}


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the loop run until ``condition`` holds; fail after a generous bound."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what}: not reached")


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


BIG = "".join(f"10.0.{i >> 8}.{i & 255} host{i}.test\n" for i in range(5000))


def test_each_change_reaches_the_registry_as_the_changed_lines(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(BIG)
    registry = CountingRegistry()
    source = HostsSource(registry, [str(path)])

    async def body() -> None:
        await source.load()
        # Handed on in pieces of PIECE records, the loop answering between them.
        assert registry.deltas == [(PIECE, 0)] * (5000 // PIECE)
        steps: list[tuple[str, Callable[[str], str], tuple[int, int] | None]] = [
            ("a line added in the middle", lambda t: t.replace(
                "host2500.test\n", "host2500.test\n10.9.9.9 added.test\n"), (1, 0)),
            ("a line changed", lambda t: t.replace("10.0.3.232 host1000.test",
                                                   "10.0.3.232 renamed.test"), (1, 1)),
            ("a line removed at the top", lambda t: t.split("\n", 1)[1], (0, 1)),
            ("a line duplicated", lambda t: t + "10.0.0.5 host5.test\n", (1, 0)),
            ("the duplicate removed", lambda t: t.rsplit("10.0.0.5 host5.test\n", 1)[0], (0, 1)),
            ("a line moved", lambda t: "10.0.0.7 host7.test\n" + t.replace(
                "10.0.0.7 host7.test\n", ""), None),
            ("a comment and a bad line", lambda t: "# note\nnot-an-ip x\n" + t, None),
            ("the same bytes again", lambda t: t, None),
        ]
        for what, edit, delta in steps:
            registry.deltas.clear()
            path.write_text(edit(path.read_text()))
            await source.load()
            assert held(registry) == fresh(path), what
            assert answers(registry) == fresh_answers(path), what
            assert registry.deltas == ([delta] if delta else []), what
        # Replaced by rename: a new inode, one line different: still one line's delta.
        registry.deltas.clear()
        new = tmp_path / "hosts.new"
        new.write_text(path.read_text().replace("host4000.test", "host4000b.test"))
        os.replace(new, path)
        await source.load()
        assert registry.deltas == [(1, 1)] and held(registry) == fresh(path)
        # Truncated to nothing: every record goes, in one delta.
        count = sum(held(registry).values())
        path.write_text("")
        await source.load()
        pieces = -(count // -PIECE)
        assert registry.deltas[-pieces:] == \
            [(0, PIECE)] * (count // PIECE) + [(0, count % PIECE)] * (count % PIECE > 0)
        assert held(registry) == Counter()
        # Back, then removed: its records go.
        path.write_text("10.1.1.1 back.test\n")
        await source.load()
        assert answers(registry) == {"back.test": ("10.1.1.1",)}
        path.unlink()
        await source.load()
        assert held(registry) == Counter() and not source.errors

    run(body)


def test_an_unreadable_file_keeps_its_records_and_reports_it(tmp_path: Path) -> None:
    # A directory where the file was: unreadable as a hosts file, for root too (CI runs as
    # root, which a chmod 0 would not stop).
    path = tmp_path / "hosts"
    path.write_text("10.0.0.1 kept\n")
    registry = CountingRegistry()
    source = HostsSource(registry, [str(path)])

    async def body() -> None:
        await source.load()
        path.unlink()
        path.mkdir()
        await source.load()
        assert source.errors == {path: f"cannot read {path}: Is a directory"}
        assert answers(registry) == {"kept": ("10.0.0.1",)}
        path.rmdir()
        path.write_text("10.0.0.1 kept\n10.0.0.3 more\n")
        await source.load()
        assert not source.errors and registry.deltas[-1] == (1, 0)

    run(body)


def test_several_files_and_a_switch_of_paths(tmp_path: Path) -> None:
    one, two, three = tmp_path / "one", tmp_path / "two", tmp_path / "three"
    one.write_text("10.0.0.1 shared\n10.0.0.2 a\n")
    two.write_text("10.0.0.3 shared\n")
    three.write_text("10.0.0.4 c\n")
    registry = CountingRegistry()
    source = HostsSource(registry, [str(one), str(two)])

    async def body() -> None:
        await source.load()
        assert answers(registry) == fresh_answers(one, two)
        assert answers(registry)["shared"] == ("10.0.0.1", "10.0.0.3")
        registry.deltas.clear()
        # SIGHUP: two is dropped (its record goes), one kept untouched, three read at once,
        # all in one delta.
        source.set_paths([str(one), str(three)])
        assert registry.deltas == [(1, 1)]
        assert answers(registry) == fresh_answers(one, three)
        assert source.loading == []

    run(body)


def test_a_big_new_file_on_a_reload_is_loading_until_the_thread_read_it(tmp_path: Path) -> None:
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_text("10.0.0.1 small\n")
    big.write_text(BIG * 4)  # over INLINE_BYTES: read in the thread
    registry = CountingRegistry()
    source = HostsSource(registry, [str(small)])

    async def body() -> None:
        await source.load()
        source.set_paths([str(small), str(big)])
        assert source.loading == [big]
        watcher = asyncio.get_running_loop().create_task(source.watch())
        try:
            await until(lambda: not source.loading and not source.handing, "the big file read")
            assert answers(registry) == fresh_answers(small, big)
            # Dropped again: too big to take out inline; the watcher's thread does it.
            registry.deltas.clear()
            source.set_paths([str(small)])
            assert registry.deltas == []
            await until(lambda: not source.handing and registry.deltas != [], "the big file out")
            assert registry.deltas == [(0, PIECE)] * (20000 // PIECE)
            assert answers(registry) == fresh_answers(small)
        finally:
            watcher.cancel()

    run(body)


def test_origins_follow_lines_that_moved(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("10.0.0.1 a\n10.0.0.2 b\n")
    registry = Registry()
    source = HostsSource(registry, [str(path)])

    async def body() -> None:
        await source.load()
        (b,) = registry.snapshot.global_names["b"].records
        assert b.origin == str(path) and source.origin(b) == f"{path}:2"
        path.write_text("# two lines\n10.0.0.9 new\n10.0.0.1 a\n10.0.0.2 b\n")
        await source.load()
        assert registry.snapshot.global_names["b"].records == (b,)  # the same record
        assert source.origin(b) == f"{path}:4"

    run(body)


def test_in_thread_hands_back_results_and_errors() -> None:
    async def body() -> None:
        assert await in_thread(lambda: 42) == 42
        with pytest.raises(ZeroDivisionError):
            await in_thread(lambda: 1 // 0)

    run(body)
