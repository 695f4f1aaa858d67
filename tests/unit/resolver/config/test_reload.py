"""What SIGHUP may change, read off the settings table: bound sockets, the user, the worker count
and the set of sources need a restart and keep their running values; every other setting is
applied, and the ones answers are memoized on drop every memo."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from resolver.config import reload
from resolver.config.reload import (
    MEMO_SETTINGS,
    RESTART_ONLY,
    areas,
    changed_settings,
    drops_memo,
    merge,
)
from resolver.config.settings import SETTINGS, Config, setting_keys
from resolver.dns.addresses import HostPort


def test_restart_only_settings() -> None:
    assert {"listen", "user", "workers", "docker", "docker_hosts", "swarm", "swarm_managers",
            "metrics", "metrics_listen", "rate_limit", "resolved", "udp_buffer"} == RESTART_ONLY
    assert not {"ttl", "hosts_files", "upstreams", "log_level"} & RESTART_ONLY


def test_memo_settings() -> None:
    assert {"ttl", "domain", "allow", "upstreams", "forward_zones", "bogus_priv",
            "default_bridge_names", "as_container", "host_names", "special_names", "identity",
            "hide_identity", "hide_version"} == MEMO_SETTINGS
    # Nothing that needs a restart can change a memo in a running daemon.
    assert not MEMO_SETTINGS & RESTART_ONLY


def test_the_sets_follow_the_table() -> None:
    # Derived, not listed: every key is in the table, and the table's flags are what decides.
    assert set(setting_keys()) == {s.key for s in SETTINGS}
    assert RESTART_ONLY == {s.key for s in SETTINGS if not s.live}
    assert all(s.area for s in SETTINGS), [s.key for s in SETTINGS if not s.area]
    assert not hasattr(reload, "LIVE")  # no second list kept beside the table


def test_merge_keeps_restart_only_values_and_applies_the_rest() -> None:
    old = Config(listen=(HostPort("127.0.0.1", 5300),), workers=1, ttl=600)
    new = replace(old, listen=(HostPort("127.0.0.1", 5400),), workers=2, ttl=30,
                  allow=(ipaddress.ip_network("10.0.0.0/8"),), user="nobody")
    merged, applied, kept = merge(old, new)
    assert applied == ["ttl", "allow"]
    assert kept == ["listen", "user", "workers"]
    assert merged.listen == old.listen and merged.workers == 1 and merged.user is None
    assert merged.ttl == 30 and merged.allow == new.allow
    assert changed_settings(old, merged) == ["ttl", "allow"]


def test_merge_of_an_unchanged_config() -> None:
    config = Config(ttl=5)
    merged, applied, kept = merge(config, Config(ttl=5))
    assert (merged, applied, kept) == (config, [], [])


def test_areas_and_memo_drop() -> None:
    assert areas(["ttl", "upstreams", "cache_size", "tcp_max", "log_level", "hosts_files"]) == {
        "answer", "forward", "tcp", "logs", "discovery"}
    assert areas([]) == set()
    assert drops_memo(["log_level", "ttl"]) and not drops_memo(["log_level", "cache_size"])
