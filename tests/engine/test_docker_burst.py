"""Faults on the real engine: a burst of 200 containers started at once and then removed at once
(the registry converges to the engine's state: every started name answers with its address,
then every removed name is gone), and a container that is paused when dockdns starts (the
engine's "running" filter leaves it out of a listing, but it runs and Docker's DNS answers it).

Answers are polled with generous bounds, never timed. Four API calls at a time keep the engine's
CPU use modest on a 2-core machine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import dns.exception
import dns.rcode
import docker
import pytest

from tests.support.daemon import RunningDaemon, dockdns
from tests.support.engine import Box, Lab, lab, wait_for
from tests.support.net import addresses, ask
from tests.support.quiet_upstream import refusing_upstream

pytestmark = pytest.mark.docker

BURST = 200
PARALLEL = 4
POOL = "10.249.0.0/16"
# Unique per run: a network Docker could not release after an earlier run's burst (see
# Lab._remove_network) must not be in the way.
NET = f"dr-net{os.getpid()}"


@pytest.fixture(scope="module")
def made() -> Iterator[Lab]:
    with lab("dr-", pool=POOL) as the_lab:
        the_lab.network(NET)
        yield the_lab


@pytest.fixture(scope="module")
def daemon(made: Lab) -> Iterator[RunningDaemon]:
    with refusing_upstream() as upstream, \
            dockdns("--upstream", upstream, docker=True) as running:
        yield running


def answered(daemon: RunningDaemon, name: str) -> set[str]:
    try:
        reply = ask(daemon.host, daemon.port, name, timeout=2.0)
    except dns.exception.Timeout:
        return {"(no answer)"}
    return addresses(reply) if reply.rcode() == dns.rcode.NOERROR else set()


def in_parallel(work: Callable[[docker.APIClient, str], object], items: Iterable[str]) -> None:
    """``work(api, item)`` for every item, PARALLEL at a time, each thread with its own client
    (the SDK's HTTP session is not meant to be shared between threads)."""
    local = threading.local()
    clients: list[docker.APIClient] = []
    lock = threading.Lock()

    def run(item: str) -> object:
        api = getattr(local, "api", None)
        if api is None:
            api = local.api = docker.APIClient(version="auto", timeout=120)
            with lock:
                clients.append(api)
        return work(api, item)

    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(run, items))
    finally:
        for api in clients:
            api.close()


def test_a_burst_of_200_containers_converges_both_ways(made: Lab, daemon: RunningDaemon) -> None:
    names = [f"dr-b{i:03d}" for i in range(BURST)]
    # Created first (quick), then all started at once: the burst of events is the start.
    boxes: list[Box] = [made.container(name, NET, start=False) for name in names]
    in_parallel(lambda api, cid: api.start(cid), [box.id for box in boxes])
    expected = {box.name: box.ip(NET) for box in boxes}
    assert len(set(expected.values())) == BURST

    def missing() -> list[str]:
        return [name for name, ip in expected.items() if answered(daemon, name) != {ip}]

    left = list(names)

    def all_answer() -> bool:
        nonlocal left
        left = [name for name in left if answered(daemon, name) != {expected[name]}]
        return not left

    wait_for(all_answer, timeout=180, interval=0.5, message="every started name answering")
    assert missing() == []  # all at once, not just each at some moment

    in_parallel(lambda api, cid: api.remove_container(cid, force=True),
                [box.id for box in boxes])
    for box in boxes:
        made.boxes.pop(box.name, None)
    left = list(names)

    def all_gone() -> bool:
        nonlocal left
        left = [name for name in left if answered(daemon, name)]
        return not left

    wait_for(all_gone, timeout=180, interval=0.5, message="every removed name gone")
    assert [name for name in names if answered(daemon, name)] == []
    assert daemon.process.poll() is None


def test_a_container_paused_before_dockdns_starts_is_answered(made: Lab) -> None:
    box = made.container("dr-paused", NET)
    made.client.api.pause(box.id)
    try:
        with refusing_upstream() as upstream, \
                dockdns("--upstream", upstream, docker=True) as fresh:
            # The first full listing (startup waits for it, bounded) already has it.
            wait_for(lambda: answered(fresh, "dr-paused") == {box.ip(NET)}, timeout=60,
                     message="the paused container answering")
            made.client.api.unpause(box.id)
            made.client.api.pause(box.id)
            assert answered(fresh, "dr-paused") == {box.ip(NET)}
    finally:
        made.client.api.unpause(box.id)
