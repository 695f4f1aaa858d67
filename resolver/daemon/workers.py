"""``--workers N``: N processes serving the same listen addresses, each with the whole registry.

One Python process answers on one core; on a bigger host throughput scales by running several.
The process started as ``dockdns serve`` becomes a small supervisor: it checks that the addresses
are free, forks N workers that each run the ordinary daemon and bind with SO_REUSEPORT (the
kernel spreads UDP queries and TCP connections over them), passes SIGTERM, SIGINT and SIGHUP on to
them, and exits when they all have. The set lives and dies together: a worker that exits on its
own (even cleanly) takes the others down and the supervisor exits non-zero, so a service manager
restarts the whole set instead of leaving it silently short of a worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable
from types import FrameType

from resolver.dns.addresses import HostPort
from resolver.serve.sockets import bind_problem, bind_tcp, bind_udp

log = logging.getLogger("dockdns")

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def address_problem(addresses: Iterable[HostPort]) -> tuple[HostPort, OSError] | None:
    """The first address something else already serves, with the error binding it gave.

    Workers bind with SO_REUSEPORT, which would quietly share a port with another server that
    set it too; binding once without it first turns that into the usual "in use" error.
    """
    for address in addresses:
        for bind in (bind_udp, bind_tcp):
            try:
                bind(address).close()
            except OSError as err:
                return address, err
    return None


def _die_with_parent(supervisor: int) -> None:
    """Ask the kernel to SIGTERM this worker when the supervisor dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != supervisor:  # it died before the request was made
        os._exit(1)


def _worker(index: int, serve: Callable[[int], int], supervisor: int) -> None:
    """The forked child: run one daemon and leave without returning into the supervisor."""
    code = 1
    try:
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
        _die_with_parent(supervisor)
        code = serve(index)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention


def run(count: int, addresses: Iterable[HostPort], serve: Callable[[int], int]) -> int:
    """Fork ``count`` workers that each call ``serve(index)``; return the set's exit status."""
    addresses = list(addresses)
    problem = address_problem(addresses)
    if problem is not None:
        print(f"dockdns: {bind_problem(*problem)}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    supervisor = os.getpid()
    workers: dict[int, int] = {}
    stopping = False

    def forward(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    # Signals wait until every worker exists, so that each one reaches all of them.
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    try:
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, forward)
        for index in range(count):
            pid = os.fork()
            if pid == 0:
                _worker(index, serve, supervisor)
            workers[pid] = index
    except OSError as err:
        print(f"dockdns: cannot start worker {len(workers)}: {err.strerror or err}",
              file=sys.stderr)
        forward(signal.SIGTERM, None)
        for pid in list(workers):
            os.waitpid(pid, 0)
        return 1
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    log.info("dockdns started %d workers (pids %s)", count, " ".join(map(str, workers)))
    result = 0
    while workers:
        pid, status = os.wait()
        if pid not in workers:
            continue
        index = workers.pop(pid)
        code = _exit_code(status)
        if not stopping:
            log.error("worker %d (pid %d) exited with status %d; stopping the others",
                      index, pid, code)
            forward(signal.SIGTERM, None)
            result = code or 1
        elif code and not result:
            result = code
    return result
