"""Names from labels, environment values and host config (inspection and conventions): every
bad value is logged once per container and skipped, and nothing else of that container is lost."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from discovery.docker import labels as labels_module
from discovery.docker.inspection import container_entries, cross_records
from discovery.registry.model import Network, Record

NETWORKS = {
    "front": Network("front", gateways=("10.0.1.1",)),
    "bridge": Network("bridge", default_bridge=True, gateways=("172.17.0.1",)),
}


def inspect(name: str, labels: dict[str, str] | None = None, *, env: list[str] | None = None,
            image: str = "app:1", networks: dict[str, str] | None = None,
            hostname: str = "", domainname: str = "", extra_hosts: list[str] | None = None,
            links: list[str] | None = None, cid: str = "") -> dict[str, Any]:
    cid = cid or (name.encode().hex() * 8)[:64]
    return {
        "Id": cid, "Name": "/" + name,
        "State": {"Running": True},
        "Config": {"Labels": labels or {}, "Env": env or [], "Image": image,
                   "Hostname": hostname or cid[:12], "Domainname": domainname},
        "HostConfig": {"ExtraHosts": extra_hosts, "Links": links},
        "NetworkSettings": {"Networks": {
            net: {"IPAddress": ip, "Aliases": [cid[:12]]}
            for net, ip in (networks or {"front": "10.0.1.2"}).items()}},
    }


def records_of(data: dict[str, Any], compat: tuple[str, ...] = ("dnsdock", "proxy")
               ) -> tuple[Record, ...]:
    return container_entries(data, NETWORKS, False, "docker:test", compat).records


@pytest.fixture(autouse=True)
def fresh_warnings() -> None:
    labels_module._warned.clear()


BAD_NAMES = [
    ("", "empty name"),
    ("a" * 64 + ".test", "label of 64 octets"),
    (".".join(["abcdefghi"] * 26), "name of 259 octets"),
    ("caf\ufffd.test", "not an ASCII name"),
    ("a.*.test", "'*' is allowed only"),
    ("a*.test", "'*' is allowed only"),
]


@pytest.mark.parametrize(("bad", "problem"), BAD_NAMES)
def test_bad_alias_is_logged_once_and_the_rest_kept(bad: str, problem: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    data = inspect("web", {"dockdns.alias": f"{bad},good.test" if bad else "",
                           "dockdns.ttl": "7", "dockdns.srv": "_http._tcp:8080"})
    with caplog.at_level(logging.WARNING, "dockdns.docker"):
        first = records_of(data)
        again = records_of(data)  # rebuilt (a network change): not logged again
    assert first == again
    (record,) = first
    assert "web" in record.names and record.ttl == 7 and record.srv_names == (("_http._tcp", 8080),)
    if bad:
        assert "good.test" in record.names
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert problem in warnings[0] and "container web" in warnings[0]
    assert "\ufffd" not in warnings[0]  # escaped


@pytest.mark.parametrize("value", ["five", "-1", "2147483648", "", "5s"])
def test_bad_ttl_is_logged_and_ignored(value: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "dockdns.docker"):
        (record,) = records_of(inspect("web", {"dockdns.ttl": value, "dockdns.alias": "w.test"}))
    assert record.ttl is None and "w.test" in record.names
    assert len(caplog.records) == 1 and "not a TTL" in caplog.records[0].getMessage()


def test_srv_label_keeps_good_entries(caplog: pytest.LogCaptureFixture) -> None:
    label = "_http._tcp:8080,_bad._tcp:0,_big._udp:70000,http._tcp:80,_x._sctp:1,_m._udp:9100"
    with caplog.at_level(logging.WARNING, "dockdns.docker"):
        (record,) = records_of(inspect("web", {"dockdns.srv": label}))
    assert record.srv_names == (("_http._tcp", 8080), ("_m._udp", 9100))
    assert len(caplog.records) == 4


def test_wildcard_label_and_wildcard_alias() -> None:
    (record,) = records_of(inspect("web", {"dockdns.wildcard": "true",
                                            "dockdns.alias": "*.dev.test"}))
    assert "*.web" in record.names and "*.dev.test" in record.names
    assert "*.*.dev.test" not in record.names


def test_dnsdock_labels_and_compat_off() -> None:
    data = inspect("api", {"com.dnsdock.alias": "api.example,old.example",
                           "com.dnsdock.image": "backend"}, image="corp/api:2")
    (record,) = records_of(data)
    assert {"api.example", "old.example", "api.backend"} <= set(record.names)
    (plain,) = records_of(data, compat=("proxy",))
    assert not {"api.example", "api.backend"} & set(plain.names)
    ignored = inspect("hidden", {"com.dnsdock.ignore": "true"})
    assert records_of(ignored) == ()
    assert records_of(ignored, compat=())[0].names[0] == "hidden"


def test_compose_and_domain_names() -> None:
    (record,) = records_of(inspect("proj-web-1", {"com.docker.compose.service": "web",
                                                   "com.docker.compose.project": "proj"},
                                   hostname="box", domainname="corp.test"))
    assert {"web.proj", "box.corp.test", "box"} <= set(record.names)


def test_extra_hosts_are_private_to_the_container(caplog: pytest.LogCaptureFixture) -> None:
    data = inspect("web", extra_hosts=["db.test:10.9.9.9", "host.docker.internal:host-gateway",
                                       "v6.test:fd00::5", "bad name:1.2.3.4", "x.test:nope",
                                       "noseparator"])
    with caplog.at_level(logging.WARNING, "dockdns.docker"):
        records = records_of(data)
    private = {r.names[0]: r for r in records if r.clients}
    assert private["db.test"].ipv4 == ("10.9.9.9",)
    assert private["host.docker.internal"].ipv4 == ("172.17.0.1",)
    assert private["v6.test"].ipv6 == ("fd00::5",)
    assert all(r.clients == ("10.0.1.2",) for r in private.values())
    assert len(caplog.records) == 3
    assert any("web" in r.names for r in records if not r.clients)  # its names are all there


def test_proxy_names_answer_with_the_proxy() -> None:
    proxy = container_entries(inspect("edge", image="nginxproxy/nginx-proxy:1.4",
                                      networks={"front": "10.0.1.10"}), NETWORKS, False, "d")
    traefik = container_entries(inspect("tr", image="traefik:v3",
                                        networks={"front": "10.0.1.11"}), NETWORKS, False, "d")
    app = container_entries(inspect("app", {
        "traefik.http.routers.r1.rule": "Host(`shop.test`) || Host(`a.test`, `b.test`)",
        "traefik.http.routers.r2.rule": "PathPrefix(`/x`)"},
        env=["VIRTUAL_HOST=app.test,*.app.test", "OTHER=1"]), NETWORKS, False, "d")
    records = cross_records([proxy, traefik, app], NETWORKS)
    by_name = {(n, r.ipv4) for r in records for n in r.names}
    assert ("app.test", ("10.0.1.10",)) in by_name and ("*.app.test", ("10.0.1.10",)) in by_name
    assert {("shop.test", ("10.0.1.11",)), ("a.test", ("10.0.1.11",)),
            ("b.test", ("10.0.1.11",))} <= by_name
    # A labelled proxy serves every convention's names.
    labelled = container_entries(inspect("mine", {"dockdns.proxy": "true"},
                                         networks={"front": "10.0.1.12"}), NETWORKS, False, "d")
    records = cross_records([proxy, traefik, labelled, app], NETWORKS)
    assert {r.ipv4 for r in records} == {("10.0.1.12",)}
    off = container_entries(inspect("app", env=["VIRTUAL_HOST=app.test"]), NETWORKS, False,
                            "d", ("dnsdock",))
    assert cross_records([proxy, off], NETWORKS) == ()


def test_links_on_the_default_bridge_for_the_linking_container() -> None:
    target = container_entries(inspect("db", networks={"bridge": "172.17.0.2"}, hostname="dbh"),
                               NETWORKS, False, "d")
    client = container_entries(inspect("app", networks={"bridge": "172.17.0.3"},
                                       links=["/db:/app/database"]), NETWORKS, False, "d")
    (record,) = cross_records([target, client], NETWORKS)
    assert set(record.names) == {"database", "dbh", "db"}
    assert record.clients == ("172.17.0.3",) and record.network == "bridge"
    assert record.ipv4 == ("172.17.0.2",)
