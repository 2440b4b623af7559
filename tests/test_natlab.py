"""The NAT lab: daemons behind real kernel NATs in network namespaces, a relay on the public side.

Each test builds its namespaces (:mod:`tests.natlab`) and always removes them; without root or
``ip``/``nft`` it skips and says why.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

import pytest

import auralink
from auralink.mesh import Stream
from auralink.mesh.daemon import DaemonClient
from tests.daemons import Daemon, cli, cli_json
from tests.natlab import NatLab, blackhole, nat_lab
from tests.netns import Lab

pytestmark = [pytest.mark.natlab, pytest.mark.e2e]

PORT = 7700


class Mesh:
    """One or two relays, and two NATed daemons that use them as home relays and DHT bootstrap."""

    def __init__(self, net: NatLab, root: Path) -> None:
        self.net = net
        names = ("relay", "relay2", "alice", "bob") if net.relay2 is not None else ("relay", "alice", "bob")
        self.homes = {name: root / name for name in names}
        for name, home in self.homes.items():
            assert cli(home, "init", "--handle", f"@{name}.aura").returncode == 0
        self.relay = Daemon(self.homes["relay"], "--relay", listen=f"{net.relay_ip}:{PORT}", prefix=net.relay.argv())
        relay = f"{self.relay.aura_id}@{net.relay_ip}:{PORT}"
        bootstrap = ["--bootstrap", f"{net.relay_ip}:{PORT}", "--home-relay", relay]
        self.relay2: Daemon | None = None
        if net.relay2 is not None:
            self.relay2 = Daemon(
                self.homes["relay2"], "--relay", listen=f"{net.relay2_ip}:{PORT}", prefix=net.relay2.argv()
            )
            bootstrap += ["--home-relay", f"{self.relay2.aura_id}@{net.relay2_ip}:{PORT}"]
        self.alice = Daemon(self.homes["alice"], *bootstrap, listen=f"{net.private_a}:{PORT}", prefix=net.host_a.argv())
        self.bob = Daemon(self.homes["bob"], *bootstrap, listen=f"{net.private_b}:{PORT}", prefix=net.host_b.argv())
        for name in ("alice", "bob"):  # bounded: until their records are in the DHT (published after joining)
            for _ in range(100):
                status = cli_json(self.homes[name], "dht", "status")
                if status["last_publish"]["accepted"] and status["last_publish"]["seq"] == self.record_seq(name):
                    break
            else:
                raise AssertionError(f"{name} never published its record: {status}")

    def record_seq(self, name: str) -> int:
        seq: int = cli_json(self.homes[name], "status")["record_seq"]
        return seq

    def stop(self) -> None:
        for daemon in (self.alice, self.bob, self.relay, self.relay2):
            if daemon is not None:
                daemon.stop()


@pytest.fixture
def mesh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mesh]:
    param: str = getattr(request, "param", "easy")
    kind: Literal["easy", "symmetric"] = "symmetric" if param.startswith("symmetric") else "easy"
    with Lab() as lab:
        net = nat_lab(lab, kind, second_relay=param.endswith("two-relays"))
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


CHUNK = 64 * 1024
SINK = "test/sink/1"
MARKER = b"AURALINK-PLAINTEXT-MARKER-0123456789abcdef"

CAPTURE = r"""
import json, signal, socket, sys, time
marker, limit = bytes.fromhex(sys.argv[1]), time.monotonic() + float(sys.argv[2])
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
sock.settimeout(0.2)
stats = {"frames": 0, "bytes": 0, "hits": 0}
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
print("ready", flush=True)
while not stopping and time.monotonic() < limit:
    try:
        frame = sock.recv(65535)
    except TimeoutError:
        continue
    stats["frames"] += 1
    stats["bytes"] += len(frame)
    stats["hits"] += marker in frame
print(json.dumps(stats), flush=True)
"""
"""Counts every frame on every interface of a namespace, and those that contain the marker."""


async def send_through_daemons(
    alice: Path, bob: Path, size: int, *, halfway: Callable[[], Awaitable[None]] | None = None
) -> float:
    """Stream ``size`` bytes (the marker, repeated) from alice's app to bob's app through their daemons.

    Bob's app hashes what it receives and sends the digest back; returns the seconds it took.
    """
    payload = (MARKER * (CHUNK // len(MARKER) + 1))[:CHUNK]
    async with auralink.connect(bob, backend="daemon") as bob_mesh, auralink.connect(alice, backend="daemon") as mesh:

        async def sink(stream: Stream) -> None:
            digest = hashlib.sha256()
            while chunk := await stream.read():
                digest.update(chunk)
            await stream.send(digest.digest())
            stream.write_eof()

        await bob_mesh.serve(SINK, sink)
        loop = asyncio.get_running_loop()
        started = loop.time()
        stream = await mesh.open_stream("@bob.aura", SINK)
        expected = hashlib.sha256()
        chunks = size // CHUNK
        for i in range(chunks):
            expected.update(payload)
            stream.write(payload)
            await stream.drain()
            if halfway is not None and i == chunks // 2:
                await halfway()
        stream.write_eof()
        assert await stream.readexactly(32) == expected.digest()  # every byte arrived, in order
        await stream.aclose()
        return loop.time() - started


async def path_of(home: Path, target: str) -> dict[str, Any]:
    async with DaemonClient(home / "node.sock") as client:
        why: dict[str, Any] = await client.request("GET", f"/v1/why?{urlencode({'target': target})}")
        return why


@pytest.mark.parametrize("mesh", ["symmetric"], indirect=True)
def test_symmetric_nats_connect_through_the_relay_which_sees_only_ciphertext(mesh: Mesh) -> None:
    capture = mesh.net.relay.popen(sys.executable, "-c", CAPTURE, MARKER.hex(), "120", stdout=subprocess.PIPE)
    assert capture.stdout is not None and capture.stdout.readline().strip() == "ready"
    seconds = asyncio.run(send_through_daemons(mesh.homes["alice"], mesh.homes["bob"], 20 * 1024 * 1024))
    print(f"20 MiB through the relay in {seconds:.1f} s")
    capture.send_signal(signal.SIGTERM)
    stats = json.loads(capture.stdout.readline())
    assert stats["frames"] > 10_000 and stats["bytes"] > 20 * 1024 * 1024  # the transfer went through the relay
    assert stats["hits"] == 0  # and not one frame carried the plaintext
    why = cli_json(mesh.homes["alice"], "why", "@bob.aura")
    assert why["path"] == f"relay:{mesh.relay.aura_id}"  # symmetric NATs: the punch cannot work
    relay_status = cli_json(mesh.homes["relay"], "status")
    assert relay_status["relay_service"]["forwarded"] > 10_000


def test_when_the_direct_path_dies_mid_transfer_traffic_moves_to_the_relay(mesh: Mesh) -> None:
    alice, bob = mesh.homes["alice"], mesh.homes["bob"]
    assert cli_json(alice, "ping", "@bob.aura", "--count", "1")["received"] == 1
    for _ in range(50):  # bounded: the punch takes a few probe rounds
        if cli_json(alice, "why", "@bob.aura")["path"].startswith("direct:"):
            break
        cli(alice, "ping", "@bob.aura", "--count", "1")
    assert cli_json(alice, "why", "@bob.aura")["path"].startswith("direct:")
    moved: list[float] = []

    async def kill_the_direct_path() -> None:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(blackhole, mesh.net.router_a, mesh.net.public_b)
        died = loop.time()
        for _ in range(200):  # bounded polling of the explanation, at most ~10 s
            if (await path_of(alice, "@bob.aura"))["path"].startswith("relay:"):
                moved.append(loop.time() - died)
                return
            await asyncio.sleep(0.05)

    asyncio.run(send_through_daemons(alice, bob, 50 * 1024 * 1024, halfway=kill_the_direct_path))
    assert moved, "traffic never moved to the relay"
    print(f"moved to the relay {moved[0]:.2f} s after the direct path died")
    assert moved[0] < 5.0
    why = cli_json(alice, "why", "@bob.aura")
    assert why["path"].startswith("relay:") and why["history"][-1]["reason"] == "failover"


@pytest.mark.parametrize("mesh", ["symmetric+two-relays"], indirect=True)
def test_when_the_relay_in_use_dies_the_transfer_moves_to_the_other_relay(mesh: Mesh) -> None:
    alice, bob = mesh.homes["alice"], mesh.homes["bob"]
    assert mesh.relay2 is not None
    for name in ("alice", "bob"):  # bounded: both home relays have sessions
        for _ in range(100):
            if sum(r["ready"] for r in cli_json(mesh.homes[name], "status")["relays"]) == 2:
                break
        else:
            raise AssertionError(f"{name} has no session on both relays")
    assert cli_json(alice, "ping", "@bob.aura", "--count", "1")["received"] == 1
    killed: list[str] = []

    async def kill_the_relay_in_use() -> None:
        path = (await path_of(alice, "@bob.aura"))["path"]
        assert path.startswith("relay:")
        victim = mesh.relay if path == f"relay:{mesh.relay.aura_id}" else mesh.relay2
        assert victim is not None
        await asyncio.to_thread(victim.kill)
        killed.append(path)

    asyncio.run(send_through_daemons(alice, bob, 20 * 1024 * 1024, halfway=kill_the_relay_in_use))
    why = cli_json(alice, "why", "@bob.aura")
    assert killed and why["path"].startswith("relay:") and why["path"] != killed[0]
    moves = [h for h in why["history"] if h["from"] == killed[0]]
    assert moves and moves[0]["reason"] == "failover", why["history"]


CALL_ARGS = ("--duration", "3", "--json")


@pytest.mark.parametrize("mesh", ["symmetric"], indirect=True)
def test_a_call_between_symmetric_nats_goes_through_the_relays_turn_server(mesh: Mesh) -> None:
    """`call` in alice's namespace, `answer` in bob's: ICE finds only relayed candidate pairs."""
    pytest.importorskip("aiortc")
    alice, bob = mesh.homes["alice"], mesh.homes["bob"]
    for name in ("alice", "bob"):  # bounded: the home relay session is up (TURN credentials come from it)
        for _ in range(100):
            if any(r["ready"] for r in cli_json(mesh.homes[name], "status")["relays"]):
                break
        else:
            raise AssertionError(f"{name} has no relay session")
    answering = subprocess.Popen(
        [*mesh.net.host_b.argv(), "auralink-node", "--home", str(bob), "answer", "--count", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert answering.stderr is not None
        assert "answering calls" in answering.stderr.readline()  # bounded by the process: it prints or exits
        done = subprocess.run(
            [*mesh.net.host_a.argv(), "auralink-node", "--home", str(alice), "call", "@bob.aura", *CALL_ARGS],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        out, err = answering.communicate(timeout=30)
    finally:
        answering.kill()
    report = json.loads(done.stdout)
    assert json.loads(out) == {"served": 1}, err
    assert report["path"]["kind"] == "relay", report["path"]
    assert report["path"]["local"].startswith(f"{mesh.net.relay_ip}:")  # allocated on the relay's TURN server
    assert report["frames"]["video"] > 0 and report["frames"]["audio"] > 0
    assert report["echo_latency_ms"]["count"] > 0 and report["data_rtt_ms"]["count"] > 0
