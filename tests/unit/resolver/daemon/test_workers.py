"""The --workers supervisor in-process: real forks of this test process, each worker running a
small serve function instead of the daemon. The set lives and dies together (one worker leaving
takes the others down, the status is non-zero), signals reach every worker, and an address
already served elsewhere stops it before any fork."""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.daemon import workers
from resolver.dns.addresses import HostPort
from tests.support.net import free_port


@pytest.fixture(autouse=True)
def handlers_restored() -> Iterator[None]:
    # The supervisor takes SIGTERM, SIGINT and SIGHUP for good (it exits once its workers have):
    # give pytest its own back.
    saved = {sig: signal.getsignal(sig) for sig in workers.FORWARDED_SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def wait_for_files(paths: list[Path]) -> None:
    for _ in range(2000):
        if all(path.exists() for path in paths):
            return
        time.sleep(0.005)
    raise AssertionError(f"workers never started: {paths}")


def test_one_worker_leaving_takes_the_set_down(tmp_path: Path) -> None:
    def serve(index: int) -> int:
        (tmp_path / f"worker{index}").write_text(str(os.getpid()))
        if index == 0:
            wait_for_files([tmp_path / "worker1"])
            return 0  # leaves on its own, cleanly
        time.sleep(60)  # until the supervisor passes SIGTERM on
        return 5

    address = HostPort("127.0.0.1", free_port())
    assert workers.run(2, [address], serve) == 1
    pids = {int((tmp_path / f"worker{n}").read_text()) for n in range(2)}
    assert len(pids) == 2 and os.getpid() not in pids


def test_signals_reach_every_worker(tmp_path: Path) -> None:
    def serve(index: int) -> int:
        (tmp_path / f"worker{index}").write_text("up")
        time.sleep(60)  # SIGTERM (default action) ends it
        return 0

    def stop_when_up() -> None:
        wait_for_files([tmp_path / f"worker{n}" for n in range(3)])
        os.kill(os.getpid(), signal.SIGTERM)  # to the supervisor, as systemd would

    stopper = threading.Thread(target=stop_when_up)
    stopper.start()
    try:
        # Each worker was ended by SIGTERM: the shell's 128 + 15.
        assert workers.run(3, [HostPort("127.0.0.1", free_port())], serve) == 143
    finally:
        stopper.join()


def test_an_address_in_use_stops_it_before_forking(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        address = HostPort("127.0.0.1", taken.getsockname()[1])
        problem = workers.address_problem([HostPort("127.0.0.1", free_port()), address])
        assert problem is not None and problem[0] == address
        assert problem[1].errno == errno.EADDRINUSE
        forked: list[int] = []

        def serve(index: int) -> int:
            forked.append(index)
            return 0

        assert workers.run(2, [address], serve) == 1
        assert forked == []
        assert "the address is already in use" in capsys.readouterr().err
    assert workers.address_problem([HostPort("127.0.0.1", free_port())]) is None
