"""``python3 -m benchmarks.profile``: where dockdns spends its time under dnsperf load.

Starts dockdns with the 10,000-name registry of scenario 1, fills its memo with one pass of the
query mix, then samples it with py-spy (``pip install py-spy``; it needs ptrace, i.e. root)
while dnsperf runs, and prints the functions and native frames with the most samples.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from benchmarks import dnsperf, servers, workload
from benchmarks.scenarios import LOCAL_REGISTRY, LOOPBACK


def top_frames(raw: Path, count: int) -> list[tuple[float, str]]:
    """The frames py-spy's raw output (``stack;frames COUNT`` per line) saw most, by self time."""
    self_time: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        total += int(samples)
        self_time[stack.split(";")[-1]] += int(samples)
    return [(100 * n / total, frame) for frame, n in self_time.most_common(count)] if total else []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.profile", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--native", action="store_true",
                        help="include C frames (the kernel calls show as libc's sendto, ...)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("benchmarks.profile: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dockdns-profile-") as name:
        work = Path(name)
        work.chmod(0o755)
        hosts = workload.write_hosts(work / "hosts", LOCAL_REGISTRY)
        mix = [workload.local_name(i) for i in workload.mix_indexes(LOCAL_REGISTRY)]
        queries = workload.write_queries(work / "queries", mix)
        # Every name is local; the upstream (discard port on loopback) is never asked.
        with servers.dockdns("dockdns", LOOPBACK, servers.free_port(),
                             ["--hosts-file", str(hosts), "--upstream", f"{LOOPBACK}:9"],
                             workload.local_name(0), work) as server:
            dnsperf.run(server.host, server.port, queries, None, passes=1)
            load = threading.Thread(target=dnsperf.run, daemon=True, args=(
                server.host, server.port, queries, args.seconds + 2))
            load.start()
            raw = work / "profile.txt"
            argv_spy = ["py-spy", "record", "-p", str(server.pids[0]), "-d",
                        f"{args.seconds:g}", "-r", "500", "-f", "raw", "-o", str(raw)]
            # Native frames need the process stopped while sampled; Python frames do not.
            argv_spy += ["--native"] if args.native else ["--nonblocking"]
            subprocess.run(argv_spy, check=True, capture_output=True, timeout=args.seconds + 60)
            load.join()
            for share, frame in top_frames(raw, args.top):
                print(f"{share:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
