"""Hosts files holding any bytes at all, and hosts files that stop being readable, over the real
daemon: bad lines are logged escaped and skipped, the source never dies, an unreadable file
keeps its last good records while /readyz names the problem, and --user warns at start."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemon import dockdns, http_get
from tests.support.scrape import scrape, value
from tests.support.upstream import FaultServer


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def replace(path: Path, data: bytes) -> None:
    """Write a new version of the file beside it and move it into place, as editors do."""
    fresh = path.with_suffix(".new")
    fresh.write_bytes(data)
    os.replace(fresh, path)


def test_any_bytes_are_logged_escaped_and_skipped_and_the_source_lives_on(
        tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_bytes(b"10.9.0.1 good1\n"
                      b"10.9.0.2 nul\x00byte\n"
                      b"10.9.0.3 \xff\xfeinvalid-utf8\n"
                      b"10.9.0.4 " + b"x" * 100_000 + b"\n"
                      b"10.9.0.5 " + b"l" * 64 + b".example\n"
                      b"10.9.0.6 evil\x0cFORGED line\n"
                      b"10.9.0\x00.7 good2\n"
                      b"10.9.0.8 good3\r\n")
    with FaultServer() as upstream, dockdns("--hosts-file", str(hosts), "--upstream",
                                           upstream.address) as daemon:
        assert daemon.sees("good1") == {"10.9.0.1"}
        assert daemon.sees("good3") == {"10.9.0.8"}
        for name in ("good2", "nul", "byte", "evil", "line"):
            assert daemon.sees(name) == set(), name
        log = daemon.log()
        assert "nul\\000byte" in log and "\\255\\254invalid-utf8" in log
        assert "a line of 100009 characters" in log
        assert "evil\\012FORGED line" in log
        assert not [line for line in log.splitlines() if line.startswith("FORGED")]
        # The source is still alive: a corrected file moved into place is read.
        replace(hosts, b"10.9.0.1 good1\n10.9.0.2 fixed\n")
        wait_for(lambda: daemon.sees("fixed") == {"10.9.0.2"}, "the corrected file is read")
        assert daemon.sees("good3") == set()
        assert daemon.metrics_port is not None
        samples = scrape(daemon.metrics_port)
        assert value(samples, "dockdns_source_restarts_total", source="hosts") == 0
        assert http_get(daemon.metrics_port, "/readyz")[0] == 200
        assert "Traceback" not in daemon.log()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory any user may enter (pytest's own are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="protocol-hosts-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_an_unreadable_file_keeps_its_last_good_records(shared_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    nobody = pwd.getpwnam("nobody")
    hosts = shared_dir / "hosts"
    hosts.write_text("10.9.1.1 kept\n")
    hosts.chmod(0o600)  # root's alone: read at start as root, not after --user nobody
    with FaultServer() as upstream, dockdns("--hosts-file", str(hosts), "--user", "nobody",
                                           "--upstream", upstream.address) as daemon:
        assert daemon.metrics_port is not None
        assert daemon.sees("kept") == {"10.9.1.1"}
        wait_for(lambda: "cannot be read by user nobody" in daemon.log(), "the --user warning")
        # A change the daemon cannot read: the old records stay, /readyz names the file.
        replace(hosts, b"10.9.1.1 kept\n10.9.1.2 added\n")
        hosts.chmod(0o600)
        wait_for(lambda: "keeping its 1 records as last read" in daemon.log(), "the warning")
        status, _, body = http_get(daemon.metrics_port, "/readyz")
        assert status == 503 and f"hosts: cannot read {hosts}: Permission denied" in body
        assert daemon.sees("kept") == {"10.9.1.1"}
        assert daemon.sees("added") == set()
        # Readable again: the new version is served and the daemon is ready.
        os.chown(hosts, nobody.pw_uid, nobody.pw_gid)
        wait_for(lambda: daemon.sees("added") == {"10.9.1.2"}, "the file read again")
        wait_for(lambda: http_get(daemon.metrics_port or 0, "/readyz")[0] == 200, "ready")
        assert daemon.sees("kept") == {"10.9.1.1"}
