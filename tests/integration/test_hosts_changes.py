"""A hosts file changed under a running daemon, over real sockets: after each change (lines
added, removed, changed, duplicated, the file replaced by rename, truncated to nothing, made
unreadable) the daemon answers exactly what the file says (parse_hosts + Snapshot.build of the
same bytes, and at the end a freshly started daemon on the same file), and its log shows that
only the changed lines reached the registry."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import dns.rcode

from discovery.hosts.source import parse_hosts
from discovery.registry.model import Snapshot, SourcePart
from tests.support.daemon import RunningDaemon, dockdns, http_get
from tests.support.net import addresses, ask
from tests.support.upstream import FaultServer
from tests.support.wait import wait_for

# Bigger than one block of the byte comparison, so the common prefix and suffix span blocks.
LINES = 3000
BASE = "".join(f"10.7.{i >> 8}.{i & 255} h{i}.hosts.test\n" for i in range(LINES))
# Every name any version below holds, and some no version does.
NAMES = ["h0.hosts.test", "h1.hosts.test", "h1500.hosts.test", "h2999.hosts.test",
         "added.hosts.test", "dup.hosts.test", "six.hosts.test", "renamed.hosts.test",
         "h1234.hosts.test", "never.hosts.test"]


def expected(path: Path) -> dict[str, set[str]]:
    """What a freshly built registry answers for NAMES from the file's bytes."""
    if not path.is_file():
        return {name: set() for name in NAMES}
    records, _ = parse_hosts(path.read_bytes().decode("utf-8", "surrogateescape"), str(path))
    snapshot = Snapshot.build(1, [SourcePart(records=tuple(records))])
    found: dict[str, set[str]] = {name: set() for name in NAMES}
    for name in NAMES:
        held = snapshot.global_names.get(name)
        if held is not None:
            found[name] = set(held.ipv4 + held.ipv6)
    return found


def answered(daemon: RunningDaemon) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name in NAMES:
        both: set[str] = set()
        for rdtype in ("A", "AAAA"):
            reply = ask(daemon.host, daemon.port, name, rdtype)
            if reply.rcode() == dns.rcode.NOERROR:
                both |= addresses(reply)
        found[name] = both
    return found


def deltas(daemon: RunningDaemon) -> list[tuple[int, int]]:
    return [(int(a), int(r)) for a, r in
            re.findall(r"changed: (\d+) records added, (\d+) removed", daemon.log())]


def next_delta(daemon: RunningDaemon, seen: int, what: str) -> tuple[int, int]:
    """Wait for the daemon to log its next change after ``seen`` of them; that change's delta."""
    wait_for(lambda: len(deltas(daemon)) > seen, what=what)
    found = deltas(daemon)
    assert len(found) == seen + 1, f"{what}: {found[seen:]}"
    return found[-1]


def replace(path: Path, text: str) -> None:
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    os.replace(fresh, path)


def test_every_kind_of_change_gives_the_answers_of_a_fresh_read(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(BASE)
    # Edits are moved into place whole (as editors save), so a poll never sees half a write;
    # the append is one write(2) to the file itself.
    steps: list[tuple[str, Callable[[str], str] | None, tuple[int, int]]] = [
        ("a line added", lambda t: t.replace("h1500.hosts.test\n",
                                             "h1500.hosts.test\n10.8.0.1 added.hosts.test\n"),
         (1, 0)),
        ("a line changed", lambda t: t.replace("h1.hosts.test\n", "h1.hosts.test h1b\n"), (1, 1)),
        ("a line removed", lambda t: t.replace("10.7.11.183 h2999.hosts.test\n", ""), (0, 1)),
        ("a line duplicated", lambda t: "10.8.0.2 dup.hosts.test\n" + t, (1, 0)),
        ("its twin, appended in place", None, (1, 0)),
        ("one twin removed", lambda t: t.replace("10.8.0.2 dup.hosts.test\n", "", 1), (0, 1)),
        ("an IPv6 line", lambda t: t.replace("h0.hosts.test\n",
                                             "h0.hosts.test\nfd00::6 six.hosts.test\n"), (1, 0)),
    ]
    with FaultServer() as upstream, dockdns("--hosts-file", str(hosts), "--upstream",
                                           upstream.address) as daemon:
        assert daemon.metrics_port is not None
        assert answered(daemon) == expected(hosts)
        seen = 0
        for what, edit, delta in steps:
            if edit is None:
                with hosts.open("a") as handle:
                    handle.write("10.8.0.2 dup.hosts.test\n")
            else:
                replace(hosts, edit(hosts.read_text()))
            assert next_delta(daemon, seen, what) == delta, what
            seen += 1
            assert answered(daemon) == expected(hosts), what
        # Replaced by rename (a new inode), one line different: still that line alone.
        replace(hosts, hosts.read_text().replace("h1234.hosts.test", "renamed.hosts.test"))
        assert next_delta(daemon, seen, "the renamed file") == (1, 1)
        seen += 1
        assert answered(daemon) == expected(hosts)
        # A FIFO moved into place (atomically: the name never goes missing): unreadable as a
        # hosts file; the records are kept and /readyz says why.
        before = answered(daemon)
        kept = hosts.read_text()
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        os.replace(fifo, hosts)
        wait_for(lambda: http_get(daemon.metrics_port or 0, "/readyz")[0] == 503,
                 what="not ready")
        assert f"hosts: cannot read {hosts}: not a regular file" in \
            http_get(daemon.metrics_port, "/readyz")[2]
        assert answered(daemon) == before
        # Readable again, unchanged: nothing reaches the registry, and it is ready.
        replace(hosts, kept)
        wait_for(lambda: http_get(daemon.metrics_port or 0, "/readyz")[0] == 200, what="ready")
        assert len(deltas(daemon)) == seen
        # Truncated to nothing: every name goes.
        count = sum(1 for line in kept.splitlines() if line)
        hosts.write_text("")
        assert next_delta(daemon, seen, "the truncation") == (0, count)
        seen += 1
        assert answered(daemon) == expected(hosts) == {name: set() for name in NAMES}
        # Back, and then a fresh daemon on the same file agrees with the changed one.
        replace(hosts, kept)
        assert next_delta(daemon, seen, "the file back") == (count, 0)
        assert answered(daemon) == expected(hosts)
        with dockdns("--hosts-file", str(hosts), "--upstream", upstream.address) as fresh:
            assert answered(fresh) == answered(daemon)
        assert "Traceback" not in daemon.log()


def test_several_files_change_independently(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_text(BASE)
    two.write_text("10.9.0.1 h0.hosts.test\n10.9.0.2 added.hosts.test\n")
    with FaultServer() as upstream, dockdns("--hosts-file", str(one), "--hosts-file", str(two),
                                           "--upstream", upstream.address) as daemon:
        assert daemon.sees("h0.hosts.test") == {"10.7.0.0", "10.9.0.1"}
        replace(two, "10.9.0.1 h0.hosts.test\n10.9.0.3 added.hosts.test\n")
        assert next_delta(daemon, 0, "the second file changed") == (1, 1)
        assert daemon.sees("added.hosts.test") == {"10.9.0.3"}
        assert daemon.sees("h0.hosts.test") == {"10.7.0.0", "10.9.0.1"}
        two.unlink()
        assert next_delta(daemon, 1, "the second file removed") == (0, 2)
        assert daemon.sees("h0.hosts.test") == {"10.7.0.0"}
        assert daemon.sees("added.hosts.test") == set()
        assert daemon.sees("h1500.hosts.test") == {"10.7.5.220"}
