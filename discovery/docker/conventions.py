"""Names other tools give containers, so that a user can switch to dockdns without relabelling.

- dnsdock: ``com.dnsdock.alias`` (names), ``com.dnsdock.name``/``com.dnsdock.image`` (the name
  ``NAME.IMAGE``, each part defaulting to the container's name and image) and
  ``com.dnsdock.ignore`` (no names at all).
- nginx-proxy's ``VIRTUAL_HOST`` environment variable and Traefik's ``Host(`...`)`` router rules:
  those names answer with the address of the proxy serving them (the container labelled
  ``dockdns.proxy=true``, else one running an nginx-proxy or traefik image), since that is where
  clients must connect.
- Compose: ``SERVICE.PROJECT`` for every replica; ``HOSTNAME.DOMAINNAME`` for ``--hostname`` with
  ``--domainname``.

Pure: labels and inspect data in, names out (problems logged once per container, see labels.py).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from discovery.docker.labels import name_problem, names_from, shown, warn_once

COMPAT_DNSDOCK = "dnsdock"
COMPAT_PROXY = "proxy"
COMPAT_ALL = (COMPAT_DNSDOCK, COMPAT_PROXY)

LABEL_PROXY = "dockdns.proxy"
DNSDOCK_ALIAS = "com.dnsdock.alias"
DNSDOCK_NAME = "com.dnsdock.name"
DNSDOCK_IMAGE = "com.dnsdock.image"
DNSDOCK_IGNORE = "com.dnsdock.ignore"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_PROJECT = "com.docker.compose.project"
VIRTUAL_HOST = "VIRTUAL_HOST"
# Which proxy serves which convention's names when no container is labelled dockdns.proxy.
PROXY_NGINX = "nginx-proxy"
PROXY_TRAEFIK = "traefik"
PROXY_LABELLED = "labelled"
PROXY_IMAGES = {"nginx-proxy": PROXY_NGINX, "traefik": PROXY_TRAEFIK}
_TRAEFIK_RULE = re.compile(r"^traefik\.http\.routers\.[^.]+\.rule$")
_HOST_CALL = re.compile(r"\bHost\(([^)]*)\)")
_QUOTED = re.compile(r"`([^`]*)`")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


def truthy(value: object) -> bool:
    return str(value or "").strip().lower() in TRUE_WORDS


def image_base(image: str) -> str:
    """``nginxproxy/nginx-proxy:1.4@sha256:...`` -> ``nginx-proxy``."""
    image = image.split("@", 1)[0]
    base = image.rsplit("/", 1)[-1]
    return base.split(":", 1)[0].lower()


def dnsdock_ignored(labels: Mapping[str, str], compat: Sequence[str]) -> bool:
    return COMPAT_DNSDOCK in compat and truthy(labels.get(DNSDOCK_IGNORE))


def dnsdock_names(labels: Mapping[str, str], container: str, image: str,
                  compat: Sequence[str]) -> list[str]:
    if COMPAT_DNSDOCK not in compat:
        return []
    names: list[str] = []
    if DNSDOCK_ALIAS in labels:
        names += names_from(container, DNSDOCK_ALIAS, str(labels[DNSDOCK_ALIAS]))
    if DNSDOCK_NAME in labels or DNSDOCK_IMAGE in labels:
        name = str(labels.get(DNSDOCK_NAME) or container).strip().strip(".").lower()
        base = str(labels.get(DNSDOCK_IMAGE) or image_base(image)).strip().strip(".").lower()
        names += names_from(container, f"{DNSDOCK_NAME}/{DNSDOCK_IMAGE}", f"{name}.{base}",
                            wildcard=False)
    return names


def proxy_kind(labels: Mapping[str, str], image: str, compat: Sequence[str]) -> str:
    """Whether this container is a proxy whose address proxied names answer, and which."""
    if COMPAT_PROXY not in compat:
        return ""
    if truthy(labels.get(LABEL_PROXY)):
        return PROXY_LABELLED
    return PROXY_IMAGES.get(image_base(image), "")


def _environment(config: Mapping[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in config.get("Env") or ():
        key, sep, value = str(item).partition("=")
        if sep:
            values[key] = value
    return values


def proxied_names(labels: Mapping[str, str], config: Mapping[str, Any], container: str,
                  compat: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(the proxy kind that serves them, names) from VIRTUAL_HOST and Traefik Host rules."""
    if COMPAT_PROXY not in compat:
        return ()
    found: list[tuple[str, tuple[str, ...]]] = []
    virtual = _environment(config).get(VIRTUAL_HOST)
    if virtual is not None:
        names = names_from(container, VIRTUAL_HOST, virtual)
        if names:
            found.append((PROXY_NGINX, tuple(names)))
    traefik: list[str] = []
    for key in sorted(labels):
        if not _TRAEFIK_RULE.match(key):
            continue
        rule = str(labels[key])
        calls = _HOST_CALL.findall(rule)
        if not calls:
            continue  # a PathPrefix-only rule, say: no name in it
        for call in calls:
            for host in _QUOTED.findall(call) or [call]:
                traefik += names_from(container, key, host)
    if traefik:
        found.append((PROXY_TRAEFIK, tuple(dict.fromkeys(traefik))))
    return tuple(found)


def compose_name(labels: Mapping[str, str], container: str) -> list[str]:
    service = str(labels.get(COMPOSE_SERVICE) or "").strip().lower()
    project = str(labels.get(COMPOSE_PROJECT) or "").strip().lower()
    if not service or not project:
        return []
    return names_from(container, "compose service.project", f"{service}.{project}",
                      wildcard=False)


def domain_name(config: Mapping[str, Any], container: str) -> list[str]:
    host = str(config.get("Hostname") or "").strip().lower()
    domain = str(config.get("Domainname") or "").strip().strip(".").lower()
    if not host or not domain:
        return []
    return names_from(container, "hostname.domainname", f"{host}.{domain}", wildcard=False)


def extra_hosts(host_config: Mapping[str, Any], container: str,
                host_gateway: Sequence[str]) -> list[tuple[str, str]]:
    """``--add-host NAME:IP`` entries as (name, address); ``host-gateway`` becomes the address
    Docker gives it (the default bridge's gateway)."""


    found: list[tuple[str, str]] = []
    for entry in host_config.get("ExtraHosts") or ():
        text = str(entry)
        # NAME:IP (IPv6 addresses hold colons too, names never do) or NAME=IP (Docker 25+).
        separator = min((i for i in (text.find(":"), text.find("=")) if i >= 0), default=-1)
        if separator < 0:
            warn_once(container, f"ExtraHosts {shown(text)} skipped: expected NAME:ADDRESS")
            continue
        name = text[:separator].strip().rstrip(".").lower()
        value = text[separator + 1 :].strip().strip("[]")
        problem = name_problem(name)
        if problem is not None:
            warn_once(container, f"ExtraHosts {shown(text)} skipped: {problem}")
            continue
        if value == "host-gateway":
            found.extend((name, address) for address in host_gateway)
            continue
        try:
            found.append((name, str(ipaddress.ip_address(value))))
        except ValueError:
            warn_once(container, f"ExtraHosts {shown(text)} skipped: not an address")
    return found


def links(host_config: Mapping[str, Any], container: str) -> list[tuple[str, str]]:
    """Legacy ``--link TARGET:ALIAS`` as (target container name, alias); Docker stores them as
    ``/target:/container/alias``."""
    found: list[tuple[str, str]] = []
    for entry in host_config.get("Links") or ():
        target, sep, path = str(entry).partition(":")
        alias = path.rsplit("/", 1)[-1].lower()
        target = target.strip("/")
        if not sep or not target:
            continue
        if name_problem(alias) is not None:
            warn_once(container, f"link {shown(str(entry))} skipped: {name_problem(alias)}")
            continue
        found.append((target, alias))
    return found
