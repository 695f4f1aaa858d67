"""Each component's slice carries exactly its settings' values from the one Config."""

from __future__ import annotations

import dataclasses
import ipaddress

from resolver.config import slices
from resolver.config.settings import SETTINGS, Config
from resolver.dns.addresses import HostPort

CONFIG = Config(ttl=7, domain="example.test", allow=(ipaddress.ip_network("10.0.0.0/8"),),
                upstreams=(HostPort("127.0.0.1", 5301),), cache_size=99, tcp_max=3,
                tcp_idle_timeout=1.5, hosts_files=("/x",), docker=False, swarm_refresh=9.0,
                bogus_priv=True)


def test_slices_carry_the_values() -> None:
    answer = slices.answer_settings(CONFIG)
    assert (answer.ttl, answer.domain, answer.allow) == (7, "example.test", CONFIG.allow)
    forward = slices.forward_settings(CONFIG)
    assert forward.upstreams == CONFIG.upstreams and forward.cache_size == 99
    assert forward.bogus_priv and forward.listen == CONFIG.listen
    tcp = slices.tcp_settings(CONFIG)
    assert (tcp.max_connections, tcp.idle_timeout) == (3, 1.5)
    discovery = slices.discovery_settings(CONFIG)
    assert (discovery.hosts_files, discovery.docker, discovery.swarm_refresh) == (
        ("/x",), False, 9.0)


def test_every_setting_of_a_sliced_area_is_in_its_slice() -> None:
    made = {"answer": slices.answer_settings(CONFIG), "forward": slices.forward_settings(CONFIG),
            "discovery": slices.discovery_settings(CONFIG)}
    for setting in SETTINGS:
        if setting.area in made:
            names = {f.name for f in dataclasses.fields(made[setting.area])}  # type: ignore[arg-type]
            assert setting.key in names, (setting.key, setting.area)
            assert getattr(made[setting.area], setting.key) == getattr(CONFIG, setting.key)
