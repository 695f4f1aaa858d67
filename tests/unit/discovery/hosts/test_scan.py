"""One file read again and compared with its last version (pure but for reading the file):
whatever the sequence of versions, the deltas summed equal what a fresh parse of the file gives,
nothing is both added and removed, and problems name the line in the new version."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from discovery.hosts.parse import parse_lines
from discovery.hosts.scan import MAX_FILE_BYTES, FileState, compare, read, rescan
from discovery.registry.model import Record

ORIGIN = Path("/h")


def fresh(data: bytes) -> list[Record | None]:
    found, _ = parse_lines(data.decode("utf-8", "surrogateescape").split("\n"), str(ORIGIN),
                           numbered=False)
    return found


line = st.sampled_from([b"", b"# c", b"bad", b"10.0.0.1 a", b"10.0.0.1 a", b"10.0.0.2 b",
                        b"10.0.0.3 a b", b"::1 six", b"10.0.0.4 \xff", b"10.0.0.5 c # x"])
version = st.tuples(st.lists(line, max_size=10), st.booleans()).map(
    lambda v: b"\n".join(v[0]) + (b"\n" if v[1] else b""))


@given(st.lists(version, min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_any_sequence_of_versions_agrees_with_a_fresh_parse(versions: list[bytes]) -> None:
    state = FileState()
    held: Counter[Record] = Counter()
    for data in versions:
        scan = compare(ORIGIN, state, data, None)
        held.subtract(scan.removed)
        held.update(scan.added)
        assert scan.state is not None and scan.state.data == data
        assert all(count >= 0 for count in held.values())
        wanted = Counter(r for r in fresh(data) if r is not None)
        assert +held == wanted and scan.state.records == sum(wanted.values())
        # Nothing is both added and removed: moved and unchanged lines are no change.
        assert not (set(scan.added) & set(scan.removed))
        state = scan.state


def test_problems_name_the_line_in_the_new_version() -> None:
    first = compare(ORIGIN, FileState(), b"10.0.0.1 a\n10.0.0.2 b\n", None)
    assert first.state is not None
    second = compare(ORIGIN, first.state, b"10.0.0.1 a\nnope x\n10.0.0.2 b\n", None)
    assert second.problems == ["/h:2: 'nope' is not an IP address"]
    assert (second.added, second.removed) == ([], [])


def test_unchanged_bytes_keep_the_state(tmp_path: Path) -> None:
    path = tmp_path / "h"
    path.write_bytes(b"10.0.0.1 a\n")
    first = rescan(path, FileState())
    assert first.state is not None and len(first.added) == 1
    again = rescan(path, first.state)
    assert again.state is not None and again.state.data is first.state.data
    assert (again.added, again.removed) == ([], []) and again.state.records == 1


def test_missing_unreadable_and_oversized(tmp_path: Path) -> None:
    path = tmp_path / "h"
    path.write_bytes(b"10.0.0.1 a\n")
    loaded = rescan(path, FileState())
    assert loaded.state is not None
    path.unlink()
    gone = rescan(path, loaded.state)
    assert gone.missing and gone.state is not None and gone.state.records == 0
    assert gone.removed == loaded.added
    path.mkdir()
    assert rescan(path, loaded.state).error == "Is a directory"
    path.rmdir()
    with path.open("wb") as handle:  # sparse: no disk used
        handle.truncate(MAX_FILE_BYTES + 1)
    assert rescan(path, loaded.state).error == \
        f"{MAX_FILE_BYTES + 1} bytes, more than the {MAX_FILE_BYTES} read"


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    try:
        read(fifo)
    except OSError as err:
        assert "not a regular file" in str(err)
    else:
        raise AssertionError("a FIFO was read")
