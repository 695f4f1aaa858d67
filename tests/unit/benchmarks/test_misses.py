"""The forwarded-miss mixes: no name is ever asked twice, across servers and runs."""

from __future__ import annotations

from pathlib import Path

from benchmarks import misses
from benchmarks.scenarios import Context


def names(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    assert all(line.endswith(" A") for line in lines)
    return [line[:-2] for line in lines]


def test_every_run_of_every_server_asks_new_names(tmp_path: Path) -> None:
    ctx = Context(tmp_path, 0.01, 2, 1)
    files = [misses._fresh(ctx, label)(run) for label in ("dockdns", "unbound")
             for run in range(2)]
    files.append(misses.write_names(tmp_path / "warm", "warmdockdns", misses.WARM_NAMES))
    asked = [name for path in files for name in names(path)]
    assert len(asked) == len(set(asked)) == 5 * misses.WARM_NAMES  # the floor of a short run
    assert all(name.endswith(f".miss.{misses.ZONE}") for name in asked)


def test_a_run_has_more_names_than_it_can_ask(tmp_path: Path) -> None:
    ctx = Context(tmp_path, 4.0, 1, 1)
    path = misses._fresh(ctx, "dockdns")(0)
    assert len(names(path)) == 4 * misses.NAMES_PER_SECOND


# /proc/net/udp's layout: the local address:port (hex) second, the drops last.
ROW = ("  {n}: 0100007F:{port} 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
       "        0 {n} 2 0000000000000000 {drops}\n")
TABLE = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
         "  timeout inode ref pointer drops\n"
         + ROW.format(n=101, port="D45B", drops=70) + ROW.format(n=102, port="D45B", drops=5)
         + ROW.format(n=103, port="0035", drops=9))


def test_socket_drops_sums_the_sockets_on_a_port(tmp_path: Path) -> None:
    table = tmp_path / "udp"
    table.write_text(TABLE)
    assert misses.socket_drops(0xD45B, table) == 75
    assert misses.socket_drops(53, table) == 9
    assert misses.socket_drops(1, table) == 0
    assert misses.socket_drops(53, tmp_path / "absent") == 0
