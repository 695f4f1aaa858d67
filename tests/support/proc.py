"""What /proc says about a process the tests started, and stopping one."""

from __future__ import annotations

import subprocess
from typing import Any


def vm_rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def stop(process: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Terminate ``process`` if it still runs, kill it after ``timeout`` s, and reap it."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
