"""--rate-limit in the real daemon, from a client with a real non-loopback address (a network
namespace the test makes): past its rate a client gets an empty TC=1 reply for every second
query and nothing for the others (so a forged source cannot turn dockdns into an amplifier),
TCP is not limited (its handshake proves the source: the way back for a real client), and
loopback is exempt."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dns.flags
import dns.message

from tests.support.daemon import dockdns
from tests.support.net import addresses, ask, free_port
from tests.support.netns import Namespace, namespace

NSQUERY = Path(__file__).resolve().parents[1] / "support" / "nsquery.py"


def ask_from(ns: Namespace, server: str, port: int,
             questions: list[tuple[str, bool]]) -> list[dns.message.Message | None]:
    """Ask from inside ``ns``, one question after the other; None where no reply came."""
    batch = [{"server": server, "port": port, "name": name, "type": "A", "tcp": tcp,
              "timeout": 1.0} for name, tcp in questions]
    done = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, str(NSQUERY)],
                          input=json.dumps(batch), capture_output=True, text=True, timeout=60,
                          check=True)
    return [dns.message.from_wire(bytes.fromhex(wire)) if wire else None
            for wire in json.loads(done.stdout)]


def kind(reply: dns.message.Message | None) -> str:
    if reply is None:
        return "none"
    if reply.flags & dns.flags.TC:
        assert not reply.answer, "a slipped reply carries nothing to amplify with"
        return "tc"
    assert addresses(reply) == {"10.1.2.3"}
    return "answer"


def test_rate_limit_slips_and_drops_udp_but_not_tcp_or_loopback(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("10.1.2.3 web1\n")
    loopback = free_port()
    with namespace(subnet_octet=47) as ns, \
            dockdns("--hosts-file", str(hosts), "--rate-limit", "0.01",
                    "--allow", f"{ns.address}/32", "--listen", f"127.0.0.1:{loopback}",
                    host=ns.host_address) as server:
        # 0.01 queries a second with a burst of one: the first is answered, then nothing is
        # refilled within the test, and every second limited query slips.
        replies = ask_from(ns, server.host, server.port,
                           [("web1", False)] * 6 + [("web1", True)] * 2)
        assert [kind(r) for r in replies] == ["answer", "none", "tc", "none", "tc", "none",
                                              "answer", "answer"]
        for _ in range(20):
            assert addresses(ask("127.0.0.1", loopback, "web1")) == {"10.1.2.3"}
