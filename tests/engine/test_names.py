"""Names users ask for that Docker's resolver never gave them, on the real engine.

A lab of networks and containers; dockdns listens on port 53 of a network's gateway, so that a
query from a container arrives with the container's own address. Where Docker answers a form
itself, the same question goes to Docker's 127.0.0.11 and the answers must agree; where Docker
gives a name only through the container's /etc/hosts (--add-host, --hostname with --domainname,
--link), the file Docker wrote is the reference; the rest (wildcards, labels, conventions) are
dockdns's own and checked against the engine's addresses.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from tests.integration.test_config import run
from tests.support.daemon import REPO, RunningDaemon, command, dockdns, http_get
from tests.support.engine import IMAGE, Box, Lab, Question, lab, wait_for
from tests.support.net import free_port
from tests.support.quiet_upstream import refusing_upstream

pytestmark = pytest.mark.docker

# Local tags of the test image whose names mark a proxy (never pulled: tagged here, removed
# after), unique per run on the shared engine.
PROXY_REPO = f"dn-{os.getpid()}"


@dataclass
class Setup:
    lab: Lab
    daemon: RunningDaemon  # every convention on, --default-bridge-names
    plain: RunningDaemon  # --compat none --no-host-names
    gateway: str  # where ``daemon`` listens (dn-a's gateway)
    plain_gateway: str  # where ``plain`` listens (dn-b's gateway)
    upstream: str


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    with lab("dn-") as made, refusing_upstream() as upstream:
        image = made.client.images.get(IMAGE)
        image.tag(f"{PROXY_REPO}/nginx-proxy", "test")
        image.tag(f"{PROXY_REPO}/traefik", "test")
        try:
            yield from _setup(made, upstream)
        finally:
            for repo in ("nginx-proxy", "traefik"):
                made.client.images.remove(f"{PROXY_REPO}/{repo}:test", noprune=True)


def _setup(made: Lab, upstream: str) -> Iterator[Setup]:
    a = made.network("dn-a")
    b = made.network("dn-b")
    made.container("dn-client", "dn-a")
    made.connect(made.boxes["dn-client"], "dn-b")
    made.container("dn-hosts", "dn-a", extra_hosts={"dn-extra.test": "10.99.0.5",
                                                    "host.docker.internal": "host-gateway"})
    made.container("dn-wild", "dn-a", labels={"dockdns.wildcard": "true"})
    made.container("dn-api", "dn-a", labels={"dockdns.alias": "api.dn-wild,*.dn-dev.test"})
    made.container("dn-ttl", "dn-a", labels={"dockdns.ttl": "5"})
    made.container("dn-bad", "dn-a", labels={"dockdns.alias": "a.*.dn-bad,dn-good.test",
                                             "dockdns.ttl": "soon",
                                             "dockdns.srv": "_x._tcp:99999"})
    made.container("dn-srv", "dn-a", ports=[80],
                   labels={"dockdns.srv": "_http._tcp:8080,_metrics._tcp:9100"})
    made.container("dn-dock", "dn-a", labels={"com.dnsdock.alias": "dn-dock.example",
                                              "com.dnsdock.image": "dn-img"})
    made.container("dn-dockhidden", "dn-a", labels={"com.dnsdock.ignore": "true"})
    made.container("dn-nginx", "dn-a", image=f"{PROXY_REPO}/nginx-proxy:test")
    made.connect(made.boxes["dn-nginx"], "dn-b")
    made.container("dn-traefik", "dn-a", image=f"{PROXY_REPO}/traefik:test")
    made.container("dn-backend", "dn-a", environment=["VIRTUAL_HOST=dn-shop.test,dn-cart.test"],
                   labels={"traefik.http.routers.r.rule": "Host(`dn-tr.test`)"})
    for replica in (1, 2):
        made.container(f"dn-proj-web-{replica}", "dn-a", aliases=["dn-web"],
                       labels={"com.docker.compose.service": "dn-web",
                               "com.docker.compose.project": "dn-proj"})
    made.container("dn-named", "dn-a", hostname="dn-hh", domainname="dn-dom.test")
    made.container("dn-linked", None)
    made.container("dn-linker", None, links={"dn-linked": "dn-lnk"})
    made.container("dn-bridged", None)
    made.container("dn-clientb", "dn-b")
    with (dockdns("--upstream", upstream, "--default-bridge-names", host=a.gateway, port=53,
                  docker=True) as daemon,
          dockdns("--upstream", upstream, "--compat", "none", "--no-host-names",
                  host=b.gateway, port=53, docker=True) as plain):
        wait_for(lambda: daemon.sees("dn-bridged") and plain.sees("dn-clientb"),
                 message="the lab in both registries")
        yield Setup(made, daemon, plain, a.gateway, b.gateway, upstream)


def ask(setup: Setup, box: str, name: str, rdtype: str = "A", server: str | None = None,
        tcp: bool = False) -> dns.message.Message:
    (reply,) = setup.lab.ask(setup.lab.boxes[box], server or setup.gateway,
                             [Question(name, rdtype, tcp)])
    assert reply is not None, f"no reply for {name} from {box}"
    return reply


def rdatas(reply: dns.message.Message, section: str = "answer") -> set[str]:
    return {rd.to_text() for rrset in getattr(reply, section) for rd in rrset}


def ip(setup: Setup, box: str, network: str = "dn-a") -> str:
    return setup.lab.boxes[box].ip(network)


def bridge_ip(box: Box) -> str:
    return str(box.inspect()["NetworkSettings"]["Networks"]["bridge"]["IPAddress"])


def etc_hosts(box: Box, name: str) -> set[str]:
    """The addresses Docker wrote for ``name`` in the container's /etc/hosts."""
    return {line.split()[0] for line in box.exec("cat", "/etc/hosts").splitlines()
            if not line.startswith("#") and name in line.split()[1:]}


def same_as_docker(setup: Setup, box: str, name: str, rdtype: str = "A") -> None:
    (theirs,) = setup.lab.ask_docker(setup.lab.boxes[box], [Question(name, rdtype)])
    ours = ask(setup, box, name, rdtype)
    assert theirs is not None
    assert (ours.rcode(), rdatas(ours)) == (theirs.rcode(), rdatas(theirs)), name


def forwarded(reply: dns.message.Message) -> bool:
    """Not answered from the registry: the refusing upstream's word."""
    return reply.rcode() == dns.rcode.REFUSED


# --- 1. host and extra-host names -------------------------------------------------------------

def test_extra_hosts_answer_for_their_container_as_its_hosts_file(setup: Setup) -> None:
    box = setup.lab.boxes["dn-hosts"]
    for name in ("dn-extra.test", "host.docker.internal"):
        expected = etc_hosts(box, name)
        assert expected, f"Docker wrote no {name}"
        for tcp in (False, True):
            assert rdatas(ask(setup, "dn-hosts", name, tcp=tcp)) == expected, name
    # Another container does not get them: its host.docker.internal is its network's gateway.
    assert forwarded(ask(setup, "dn-client", "dn-extra.test"))
    assert rdatas(ask(setup, "dn-client", "host.docker.internal")) == {setup.gateway}
    assert rdatas(ask(setup, "dn-clientb", "host.docker.internal", server=setup.gateway)) == \
        {setup.plain_gateway}
    # --no-host-names: not ours.
    assert forwarded(ask(setup, "dn-clientb", "host.docker.internal",
                         server=setup.plain_gateway))


# --- 2. wildcards -----------------------------------------------------------------------------

def test_wildcards(setup: Setup) -> None:
    same_as_docker(setup, "dn-client", "dn-wild")
    wild = ip(setup, "dn-wild")
    assert rdatas(ask(setup, "dn-client", "x.dn-wild")) == {wild}
    assert rdatas(ask(setup, "dn-client", "x.y.dn-wild")) == {wild}
    assert rdatas(ask(setup, "dn-client", "api.dn-wild")) == {ip(setup, "dn-api")}  # exact
    assert rdatas(ask(setup, "dn-client", "q.dn-dev.test")) == {ip(setup, "dn-api")}
    assert forwarded(ask(setup, "dn-client", "dn-dev.test"))


# --- 3. per-container TTL ---------------------------------------------------------------------

def test_ttl_label_forward_and_ptr(setup: Setup) -> None:
    reply = ask(setup, "dn-client", "dn-ttl")
    assert rdatas(reply) == {ip(setup, "dn-ttl")} and reply.answer[0].ttl == 5
    ptr = ask(setup, "dn-client", dns.reversename.from_address(ip(setup, "dn-ttl")).to_text(),
              "PTR")
    assert rdatas(ptr) == {"dn-ttl.dn-a."} and ptr.answer[0].ttl == 5
    assert ask(setup, "dn-client", "dn-wild").answer[0].ttl == 600


def test_bad_labels_are_logged_once_and_the_rest_kept(setup: Setup) -> None:
    same_as_docker(setup, "dn-client", "dn-bad")
    assert rdatas(ask(setup, "dn-client", "dn-good.test")) == {ip(setup, "dn-bad")}
    assert ask(setup, "dn-client", "dn-bad").answer[0].ttl == 600
    log = setup.daemon.log()
    for problem in ("'*' is allowed only", "not a TTL", "port must be 1-65535"):
        lines = [line for line in log.splitlines() if "container dn-bad" in line and
                 problem in line]
        assert len(lines) == 1, (problem, lines)


# --- 4. other tools' conventions ---------------------------------------------------------------

def test_dnsdock_labels(setup: Setup) -> None:
    dock = ip(setup, "dn-dock")
    assert rdatas(ask(setup, "dn-client", "dn-dock.example")) == {dock}
    assert rdatas(ask(setup, "dn-client", "dn-dock.dn-img")) == {dock}
    assert forwarded(ask(setup, "dn-client", "dn-dockhidden"))
    # --compat none: plain names only (and dnsdock.ignore means nothing there).
    assert forwarded(ask(setup, "dn-clientb", "dn-dock.example", server=setup.plain_gateway))


def test_proxied_names_answer_with_the_proxy(setup: Setup) -> None:
    nginx = ip(setup, "dn-nginx")
    for name in ("dn-shop.test", "dn-cart.test"):
        assert rdatas(ask(setup, "dn-client", name)) == {nginx}
    assert rdatas(ask(setup, "dn-client", "dn-tr.test")) == {ip(setup, "dn-traefik")}
    # On dn-b only the nginx proxy is there: a client there gets its address on dn-b, and
    # nothing for the Traefik name (its proxy is not on that network).
    assert rdatas(ask(setup, "dn-clientb", "dn-shop.test")) == {ip(setup, "dn-nginx", "dn-b")}
    assert forwarded(ask(setup, "dn-clientb", "dn-tr.test"))
    assert forwarded(ask(setup, "dn-clientb", "dn-shop.test", server=setup.plain_gateway))


# --- 5. compose, hostname.domainname, links ----------------------------------------------------

def test_compose_service_project_is_every_replica_as_docker_answers_the_service(
        setup: Setup) -> None:
    same_as_docker(setup, "dn-client", "dn-web")
    (theirs,) = setup.lab.ask_docker(setup.lab.boxes["dn-client"], [Question("dn-web")])
    assert theirs is not None and len(rdatas(theirs)) == 2
    assert rdatas(ask(setup, "dn-client", "dn-web.dn-proj")) == rdatas(theirs)


def test_hostname_domainname_as_the_hosts_file(setup: Setup) -> None:
    same_as_docker(setup, "dn-client", "dn-hh")
    expected = etc_hosts(setup.lab.boxes["dn-named"], "dn-hh.dn-dom.test")
    assert expected == {ip(setup, "dn-named")}
    assert rdatas(ask(setup, "dn-client", "dn-hh.dn-dom.test")) == expected


def test_links_on_the_default_bridge_as_the_hosts_file(setup: Setup) -> None:
    linker = setup.lab.boxes["dn-linker"]
    for name in ("dn-lnk", "dn-linked"):
        expected = etc_hosts(linker, name)
        assert expected == {bridge_ip(setup.lab.boxes["dn-linked"])}, name
        assert rdatas(ask(setup, "dn-linker", name)) == expected
    assert forwarded(ask(setup, "dn-bridged", "dn-lnk"))  # the link is the linker's alone
    # Without --default-bridge-names the default bridge has no names at all, links included.
    assert forwarded(ask(setup, "dn-linker", "dn-lnk", server=setup.plain_gateway))


# --- 6. SRV from labels -----------------------------------------------------------------------

def test_srv_from_labels_next_to_exposed_ports(setup: Setup) -> None:
    srv = ip(setup, "dn-srv")
    for service, port in (("_http._tcp", 8080), ("_metrics._tcp", 9100), ("_80._tcp", 80)):
        reply = ask(setup, "dn-client", f"{service}.dn-srv", "SRV")
        assert rdatas(reply) == {f"0 0 {port} dn-srv.dn-a."}, service
        assert rdatas(reply, "additional") == {srv}
    assert forwarded(ask(setup, "dn-client", "_other._tcp.dn-srv", "SRV"))


# --- every item: `dockdns registry` and `dockdns check` -----------------------------------------

def test_registry_and_check_show_the_names(setup: Setup) -> None:
    args = ["--upstream", setup.upstream, "--default-bridge-names"]
    done = run("registry", *args)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in ("*.dn-wild", "*.dn-dev.test", "dn-web.dn-proj", "dn-hh.dn-dom.test",
                 "dn-shop.test", "dn-dock.example", "dn-extra.test", "dn-lnk"):
        assert any(line.split("\t")[0] == name for line in lines), name
    hosts_ip = ip(setup, "dn-hosts")
    assert any(line.startswith("dn-extra.test\tclient ") for line in lines)
    assert f"host.docker.internal\tdn-a\t{setup.gateway}\tthe network's gateway (--host-names)" \
        in lines
    done = run("check", "x.y.dn-wild", *args)
    assert done.returncode == 0, done.stderr
    assert ip(setup, "dn-wild") in done.stdout and "container dn-wild" in done.stdout
    done = run("check", "dn-extra.test", "--from", hosts_ip, *args)
    assert done.returncode == 0 and "10.99.0.5" in done.stdout and "--add-host" in done.stdout
    done = run("check", "host.docker.internal", "--from", ip(setup, "dn-client"), *args)
    assert setup.gateway in done.stdout and "gateway" in done.stdout
    done = run("check", "dn-shop.test", *args)
    assert "served by proxy dn-nginx" in done.stdout


# --- 7 against containers: a static record that conflicts --------------------------------------

def test_static_record_conflicting_with_a_container_name(setup: Setup, tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOCKDNS_")}
    # (--log-level error: the start-up lines before the registry is read are info.)
    done = subprocess.run(command("serve", "--listen", f"127.0.0.1:{free_port()}",
                                  "--log-level", "error", "--no-metrics", "--upstream",
                                  setup.upstream, "--record",
                                  "dn-wild A 192.0.2.1"), capture_output=True, text=True,
                          cwd=REPO, env=clean, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dockdns: invalid setting 'records'"), lines
    assert "dn-wild" in lines[0]
    # On reload: logged, the records from before stay.
    config = tmp_path / "dockdns.toml"
    config.write_text('records = ["dn-static.test CNAME dn-wild"]\n')
    with dockdns("--config", str(config), "--upstream", setup.upstream, docker=True) as daemon:
        wait_for(lambda: daemon.sees("dn-wild"), message="the lab in the registry")
        assert daemon.sees("dn-static.test") == {ip(setup, "dn-wild")}  # chased inside
        config.write_text('records = ["dn-static.test A 192.0.2.3", "dn-api A 192.0.2.4"]\n')
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "invalid setting 'records'" in daemon.log(), message="the refusal")
        assert daemon.sees("dn-static.test") == {ip(setup, "dn-wild")}


# --- the memo fast path -----------------------------------------------------------------------

def memo_hits(daemon: RunningDaemon) -> float:
    assert daemon.metrics_port is not None
    _, _, body = http_get(daemon.metrics_port, "/metrics")
    (line,) = [line for line in body.splitlines() if line.startswith("dockdns_memo_hits")]
    return float(line.split()[-1])


def test_memo_serves_the_new_names(setup: Setup) -> None:
    questions = [("dn-client", "z.dn-wild", "A"), ("dn-hosts", "dn-extra.test", "A"),
                 ("dn-client", "host.docker.internal", "A"), ("dn-client", "dn-shop.test", "A"),
                 ("dn-client", "_http._tcp.dn-srv", "SRV"), ("dn-client", "dn-web.dn-proj", "A"),
                 ("dn-linker", "dn-lnk", "A")]
    for box, name, rdtype in questions:
        first = ask(setup, box, name, rdtype)
        before = memo_hits(setup.daemon)
        again = ask(setup, box, name, rdtype)
        assert memo_hits(setup.daemon) == before + 1, name
        assert rdatas(again) == rdatas(first) and rdatas(first), name
