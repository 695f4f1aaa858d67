"""The configuration layers (defaults < file < environment < flags), each value parsed and
checked where it is read, errors naming the setting, and ``describe`` saying where each value
came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resolver.config.settings import Config, ConfigError, build, describe
from resolver.dns.addresses import HostPort


def test_layers_in_order(tmp_path: Path) -> None:
    path = tmp_path / "dockdns.toml"
    path.write_text('ttl = 10\ndomain = "file.test"\nlog_level = "debug"\n')
    config = build({"config": str(path), "ttl": "30", "listen": ["127.0.0.1:5300"]},
                   environ={"DOCKDNS_DOMAIN": "Env.Test.", "DOCKDNS_TTL": "20"})
    assert config.ttl == 30 and config.domain == "env.test" and config.log_level == "debug"
    assert config.listen == (HostPort("127.0.0.1", 5300),)
    assert config.origins == {"ttl": "command line", "domain": "environment",
                              "log_level": f"config file {path}", "listen": "command line"}
    assert Config().ttl == 600 and build({}, environ={}).origins == {}


def test_lists_from_the_environment_are_comma_separated() -> None:
    config = build({}, environ={"DOCKDNS_UPSTREAMS": "127.0.0.1:5301,127.0.0.2"})
    assert config.upstreams == (HostPort("127.0.0.1", 5301), HostPort("127.0.0.2", 53))


@pytest.mark.parametrize(("flags", "environ", "setting"), [
    ({"ttl": "-1"}, {}, "ttl"),
    ({}, {"DOCKDNS_WORKERS": "many"}, "workers"),
    ({}, {"DOCKDNS_CACHE_MIN_TTL": "100", "DOCKDNS_CACHE_MAX_TTL": "10"}, "cache_min_ttl"),
    ({"listen": ["127.0.0.1:53", "127.0.0.1:53"]}, {}, "listen"),
    ({"allow": ["not a network"]}, {}, "allow"),
])
def test_errors_name_the_setting(flags: dict[str, object], environ: dict[str, str],
                                 setting: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build(flags, environ=environ)
    assert raised.value.setting == setting
    assert setting in str(raised.value) and "\n" not in str(raised.value)


def test_a_hosts_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        build({"hosts_files": [str(tmp_path)]}, environ={})


def test_describe_names_each_origin() -> None:
    config = build({"ttl": "30"}, environ={})
    text = describe(config)
    assert "ttl = 30  # command line" in text and "domain = null  # default" in text
    parsed = json.loads(describe(config, as_json=True))
    assert parsed["settings"]["ttl"] == 30 and parsed["origins"]["ttl"] == "command line"
    assert parsed["settings"]["listen"] == ["127.0.0.11:53"]
