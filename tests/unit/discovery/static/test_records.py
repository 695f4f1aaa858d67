"""Static records: parsing text and TOML tables, and the settings that carry them."""

from __future__ import annotations

from pathlib import Path

import pytest

from discovery.registry.model import Record, Snapshot, SourcePart
from discovery.static.records import StaticRecord, conflicts, parse
from resolver.config import settings


def test_text_and_table_forms() -> None:
    assert parse("Web.Test. A 192.0.2.1") == StaticRecord("web.test", "A", "192.0.2.1")
    assert parse({"name": "t.test", "type": "txt", "data": "a b", "ttl": 30}) == \
        StaticRecord("t.test", "TXT", "a b", 30)
    assert parse("192.0.2.1 PTR web.test").rtype == "PTR"


@pytest.mark.parametrize("bad", [
    "web.test A", "web.test A 2001:db8::1", "web.test AAAA 192.0.2.1", "web.test NS ns.test",
    "web.test MX mail.test", "web.test SRV 0 0 70000 t.test", "a..test A 192.0.2.1",
    "web.test PTR x.test", "web.test CNAME a.*.test",
    {"name": "x.test", "type": "A"}, {"name": "x.test", "type": "A", "data": "192.0.2.1",
                                      "ttl": "5"},
    {"name": "x.test", "type": "A", "data": "192.0.2.1", "color": "red"}, 5,
])
def test_bad_records_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse(bad)


def test_settings_from_flags_and_toml(tmp_path: Path) -> None:
    path = tmp_path / "dockdns.toml"
    path.write_text('[[records]]\nname = "a.test"\ntype = "A"\ndata = "192.0.2.7"\n'
                    '[[records]]\nname = "m.test"\ntype = "MX"\ndata = "5 a.test"\nttl = 60\n')
    config = settings.build({"config": str(path)}, {})
    assert [str(r) for r in config.records] == ["a.test A 192.0.2.7", "m.test MX 5 a.test"]
    config = settings.build({"records": ["b.test AAAA 2001:db8::1"]}, {})
    assert config.records[0].rtype == "AAAA"
    with pytest.raises(settings.ConfigError, match="'records'"):
        settings.build({"records": ["b.test AAAA nope"]}, {})
    path.write_text('[records]\nname = "a.test"\n')
    with pytest.raises(settings.ConfigError, match="'records'"):
        settings.build({"config": str(path)}, {})


def test_compat_and_host_names_settings() -> None:
    assert settings.build({}, {}).compat == ("dnsdock", "proxy")
    assert settings.build({"compat": ["dnsdock,proxy"]}, {}).compat == ("dnsdock", "proxy")
    assert settings.build({}, {"DOCKDNS_COMPAT": "none"}).compat == ("none",)
    with pytest.raises(settings.ConfigError, match="'compat'"):
        settings.build({"compat": ["none,proxy"]}, {})
    with pytest.raises(settings.ConfigError, match="'compat'"):
        settings.build({"compat": ["swarmdns"]}, {})
    assert settings.build({"host_names": False}, {}).host_names is False


def test_conflict_with_a_container_name() -> None:
    snapshot = Snapshot.build(1, [SourcePart(records=(
        Record(names=("web",), ipv4=("10.0.0.2",), network="front", origin="container web"),))])
    assert conflicts([parse("other.test A 192.0.2.1")], snapshot) == []
    (problem,) = conflicts([parse("web A 192.0.2.1")], snapshot)
    assert "container web" in problem and "front" in problem
