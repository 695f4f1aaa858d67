"""systemd's notify protocol with ``--workers N``: the service's main process is the supervisor,
and systemd (with WatchdogSec) names it in WATCHDOG_PID. One worker, the first, must speak for
the set: one READY=1 naming the supervisor as MAINPID, watchdog pings although WATCHDOG_PID is
not its own pid, one STOPPING=1."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.support.daemon import REPO, command
from tests.support.net import free_port
from tests.support.notify_socket import lines, notify_socket


def test_first_worker_notifies_for_the_set(tmp_path: Path, hosts_file: str) -> None:
    port = free_port()
    serve = command("serve", "--no-docker", "--listen", f"127.0.0.1:{port}", "--hosts-file",
                    hosts_file, "--workers", "2", "--metrics-listen",
                    f"127.0.0.1:{free_port()}")
    with notify_socket(tmp_path) as notify:
        # As systemd starts it: WATCHDOG_PID is the pid of the process it started (the shell
        # execs, so $$ is the supervisor's pid).
        env = {**os.environ, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000",
               "DOCKDNS_RESOLV_CONF": os.devnull}
        process = subprocess.Popen(["sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh", *serve],
                                   cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            ready = lines(notify.until("READY=1"))
            assert f"MAINPID={process.pid}" in ready
            notify.until("WATCHDOG=1")
            notify.until("WATCHDOG=1")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        notify.pending()  # everything sent before the set exited
        seen = lines(notify.seen)
    assert seen.count("READY=1") == 1
    assert seen.count("STOPPING=1") == 1
    assert [line for line in seen if line.startswith("MAINPID=")] == [f"MAINPID={process.pid}"]
