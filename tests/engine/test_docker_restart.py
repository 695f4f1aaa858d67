"""Engine restarts and several engines, with a private dockerd the test may stop and start
(the shared engine is never touched), next to the shared engine.

dockdns watches both. While the private engine is gone (killed, as in a crash: its containers
keep running under their shims) the last registry keeps answering; when it is back, dockerd
stops the old containers (no live-restore), restarts the one with a restart policy (with a new
address) and the other vanishes: dockdns lists again and prunes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.support.daemon import dockdns
from tests.support.engine import Lab, lab, private_engine, wait_for
from tests.support.quiet_upstream import refusing_upstream

pytestmark = pytest.mark.docker

# Subnets of the private engine: the top of the dd- range, away from the other dd- tests.
PRIVATE_POOL = "10.250.192.0/18"
# The private engine's default bridge: the last /24 of that pool.
PRIVATE_BRIDGE = "10.250.255.1/24"


@pytest.fixture
def shared() -> Iterator[Lab]:
    with lab("dd-ps") as made:
        made.network("dd-psnet")
        made.container("dd-psweb", "dd-psnet")
        yield made


def test_engine_restart_prunes_and_merges(shared: Lab) -> None:
    with (private_engine("dd-pe", PRIVATE_BRIDGE) as engine, refusing_upstream() as upstream,
          contextlib.closing(engine.client()) as private_client):
        private = Lab(private_client, "dd-p", pool=PRIVATE_POOL, others=(shared.client,))
        private.network("dd-pnet")
        # Created first so that it holds the lowest address, which the kept one may take.
        gone = private.container("dd-pgone", "dd-pnet")
        keep = private.container("dd-pkeep", "dd-pnet", restart="always")
        old_keep, old_gone = keep.ip("dd-pnet"), gone.ip("dd-pnet")
        shared_ip = shared.boxes["dd-psweb"].ip("dd-psnet")
        shared_url = shared.client.api.base_url.replace("http+docker://localhost",
                                                        "unix:///var/run/docker.sock")
        with dockdns("--docker-host", engine.url, "--docker-host", shared_url,
                     "--upstream", upstream, docker=True) as daemon:
            # Two engines merge into one registry.
            wait_for(lambda: daemon.sees("dd-pkeep") == {old_keep}, message="dd-pkeep")
            assert daemon.sees("dd-pgone") == {old_gone}
            assert daemon.sees("dd-psweb") == {shared_ip}

            # A crash: the event stream breaks, the containers still run. The last registry
            # keeps answering.
            engine.stop(kill=True)
            wait_for(lambda: f"docker engine {engine.url} lost" in daemon.log(),
                     message="dockdns noticing the engine is gone")
            assert daemon.sees("dd-pkeep") == {old_keep}
            assert daemon.sees("dd-pgone") == {old_gone}
            assert daemon.sees("dd-psweb") == {shared_ip}

            engine.start()
            new_keep = wait_for(lambda: keep.running_ip("dd-pnet"),
                                message="dd-pkeep restarted by its policy")
            assert gone.running_ip("dd-pnet") is None
            wait_for(lambda: daemon.sees("dd-pkeep") == {new_keep}
                     and not daemon.sees("dd-pgone"),
                     message="dockdns re-listed and pruned after the engine came back")
            assert daemon.sees("dd-psweb") == {shared_ip}

            # A clean stop: dockerd closes the API (and the event stream) before it stops its
            # containers, so no die event is seen; the last registry stays until it is back.
            engine.stop()
            wait_for(lambda: daemon.log().count(f"docker engine {engine.url} lost") == 2,
                     message="dockdns noticing the second loss")
            assert daemon.sees("dd-pkeep") == {new_keep}
            engine.start()
            newest = wait_for(lambda: keep.running_ip("dd-pnet"), message="dd-pkeep back")
            wait_for(lambda: daemon.sees("dd-pkeep") == {newest},
                     message="dd-pkeep answered after the second restart")
        print(f"dd-pkeep: {old_keep} -> {new_keep} -> {newest}")
