"""Each component's slice of the configuration, cut from the one ``Config``.

Components are made and reconfigured from their own slice only, so none of them imports the
config (Knot Resolver's schema per area); the settings table names each setting's area, and a
SIGHUP reconfigures the components whose area changed (resolver/config/reload.py).
"""

from __future__ import annotations

from discovery.registry.source import DiscoverySettings
from resolver.answer.settings import AnswerSettings
from resolver.config.settings import Config
from resolver.forward.settings import ForwardSettings
from resolver.serve.settings import TCPSettings


def answer_settings(config: Config) -> AnswerSettings:
    return AnswerSettings(ttl=config.ttl, domain=config.domain, allow=config.allow,
                          as_container=config.as_container,
                          default_bridge_names=config.default_bridge_names,
                          host_names=config.host_names)


def forward_settings(config: Config) -> ForwardSettings:
    return ForwardSettings(
        upstreams=config.upstreams, forward_zones=config.forward_zones,
        resolv_conf=config.resolv_conf, listen=config.listen,
        upstream_timeout=config.upstream_timeout, upstream_ca=config.upstream_ca,
        max_inflight=config.max_inflight,
        cache_size=config.cache_size, cache_min_ttl=config.cache_min_ttl,
        cache_max_ttl=config.cache_max_ttl, serve_stale=config.serve_stale,
        bogus_priv=config.bogus_priv, special_names=config.special_names,
        identity=config.identity, hide_identity=config.hide_identity,
        hide_version=config.hide_version)


def tcp_settings(config: Config) -> TCPSettings:
    return TCPSettings(max_connections=config.tcp_max, idle_timeout=config.tcp_idle_timeout)


def discovery_settings(config: Config) -> DiscoverySettings:
    return DiscoverySettings(
        hosts_files=config.hosts_files, docker=config.docker, docker_hosts=config.docker_hosts,
        include_unhealthy=config.include_unhealthy, swarm=config.swarm,
        swarm_managers=config.swarm_managers, swarm_refresh=config.swarm_refresh,
        swarm_reconcile=config.swarm_reconcile, compat=config.compat, records=config.records)
