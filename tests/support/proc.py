"""What /proc says about a process the tests started."""

from __future__ import annotations


def vm_rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")
