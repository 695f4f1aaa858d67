"""The million-line hosts scenario's pure helpers: what the client's samples say, Unbound's
config and local data, the one-line edit."""

from __future__ import annotations

from pathlib import Path

from benchmarks.hosts_scale import (
    Sample,
    quantile,
    silence,
    unbound_config,
    with_line_changed,
    write_local_data,
)


def test_silence_is_the_widest_gap_between_answers() -> None:
    samples = [Sample(0.000, 0.0005), Sample(0.002, 0.0025), Sample(0.004, None),
               Sample(1.010, 1.0101), Sample(1.012, 1.0122), Sample(5.0, 5.001)]
    seen = silence(samples, 0.0, 2.0)
    assert seen["queries"] == 5 and seen["lost"] == 1
    # From the answer at 2.5 ms to the next at 1010.1 ms: the lost query is silence.
    assert seen["max_silence_ms"] == round((1.0101 - 0.0025) * 1000, 2)
    assert seen["max_ms"] == 0.5
    # The window's start counts as an edge: a server silent from the start is silent.
    assert silence([Sample(0.5, 0.9)], 0.0, 1.0)["max_silence_ms"] == 900.0
    assert silence([], 0.0, 1.0)["max_silence_ms"] == 1000.0


def test_quantile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.99) == 99.0 and quantile(values, 0.5) == 50.0
    assert quantile([3.0], 0.99) == 3.0


def test_unbound_config_and_local_data(tmp_path: Path) -> None:
    data = write_local_data(tmp_path / "local.conf", 3)
    lines = data.read_text().splitlines()
    assert lines[0] == '  local-zone: "bench.test." static'
    assert lines[1:] == ['  local-data: "host0.bench.test. A 10.0.0.0"',
                         '  local-data: "host1.bench.test. A 10.0.0.1"',
                         '  local-data: "host2.bench.test. A 10.0.0.2"']
    conf = unbound_config(5300, 5301, 5302, data)
    assert "  interface: 127.0.0.1@5300" in conf and "  control-port: 5301" in conf
    assert "  forward-addr: 127.0.0.1@5302" in conf and f'  include: "{data}"' in conf


def test_with_line_changed(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("a\nb\nc\n")
    assert with_line_changed(path, 1, "B").read_text() == "a\nB\nc\n"
    assert with_line_changed(path, 0, "first").read_text() == "first\nb\nc\n"
    assert path.read_text() == "a\nb\nc\n"  # the file itself is left alone
