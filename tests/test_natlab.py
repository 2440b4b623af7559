"""The NAT lab: daemons behind real kernel NATs in network namespaces, a relay on the public side.

Each test builds its namespaces (:mod:`tests.natlab`) and always removes them; without root or
``ip``/``nft`` it skips and says why.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from tests.daemons import Daemon, cli, cli_json
from tests.natlab import NatLab, nat_lab
from tests.netns import Lab

pytestmark = [pytest.mark.natlab, pytest.mark.e2e]

PORT = 7700


class Mesh:
    """A relay and two NATed daemons that use it as home relay and DHT bootstrap."""

    def __init__(self, net: NatLab, root: Path) -> None:
        self.net = net
        self.homes = {name: root / name for name in ("relay", "alice", "bob")}
        for name, home in self.homes.items():
            assert cli(home, "init", "--handle", f"@{name}.aura").returncode == 0
        self.relay = Daemon(
            self.homes["relay"], "--relay", listen=f"{net.relay_ip}:{PORT}", prefix=net.relay.argv()
        )
        relay = f"{self.relay.aura_id}@{net.relay_ip}:{PORT}"
        bootstrap = ("--bootstrap", f"{net.relay_ip}:{PORT}", "--home-relay", relay)
        self.alice = Daemon(self.homes["alice"], *bootstrap, listen=f"{net.private_a}:{PORT}", prefix=net.host_a.argv())
        self.bob = Daemon(self.homes["bob"], *bootstrap, listen=f"{net.private_b}:{PORT}", prefix=net.host_b.argv())

    def stop(self) -> None:
        for daemon in (self.alice, self.bob, self.relay):
            daemon.stop()


@pytest.fixture
def mesh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mesh]:
    kind: Literal["easy", "symmetric"] = getattr(request, "param", "easy")
    with Lab() as lab:
        net = nat_lab(lab, kind)
        built = Mesh(net, tmp_path)
        try:
            yield built
        finally:
            built.stop()


def test_easy_nats_start_on_the_relay_and_move_to_direct_in_the_same_connection(mesh: Mesh) -> None:
    alice, bob = mesh.homes["alice"], mesh.homes["bob"]
    found = cli_json(alice, "resolve", "@bob.aura")
    assert found["aura_id"] == mesh.bob.aura_id
    pinged = cli_json(alice, "ping", "@bob.aura", "--count", "3")
    assert pinged["received"] == 3
    why = cli_json(alice, "why", "@bob.aura", timeout=30)
    history = why["history"]
    assert history[0]["to"] == f"relay:{mesh.relay.aura_id}"  # bob's private address is unreachable
    # Poll the explanation (bounded): the punch takes a few probe rounds after the offers.
    for _ in range(50):
        if why["path"].startswith("direct:"):
            break
        cli(alice, "ping", "@bob.aura", "--count", "1")
        why = cli_json(alice, "why", "@bob.aura")
    assert why["path"] == f"direct:{mesh.net.public_b}:{PORT}", why
    assert why["history"][-1]["from"].startswith("relay:") and why["history"][-1]["reason"] == "better"
    assert cli_json(bob, "why", mesh.alice.aura_id)["path"].startswith("direct:")
