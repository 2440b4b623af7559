"""The NAT lab proof of TURN: two callers behind symmetric NATs talk through the relay node's TURN server.

A real ``auralink-node up --relay`` runs in the lab's public segment. Each caller is a separate
process in its own private namespace (``ip netns exec``): an embedded node that gets TURN
credentials over ``auralink/turn/1`` from the relay (its AuraID proven by the mesh connection),
then a real aiortc ``RTCPeerConnection`` restricted to relayed candidates. The test process
carries the SDP offer and answer between the two over their stdin and stdout, and nothing else:
media and data go caller -> NAT -> TURN server -> NAT -> caller. The namespaces are built and
removed by the test; without root it skips.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from auralink_node.config import NodeConfig, save_config
from tests.daemons import Daemon, cli, cli_json
from tests.natlab import nat_lab
from tests.netns import Lab

pytest.importorskip("aiortc")

pytestmark = [pytest.mark.natlab, pytest.mark.e2e]

PORT = 7700
METRICS_PORT = 9100
MESSAGES = 200
FRAMES = 30
STEP_TIMEOUT = 60.0

CALLER = r"""
import asyncio, json, sys, time
import auralink
from auralink.calls.ice import IceConfig, rtc_configuration
from auralink.calls.turn import turn_server
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack

role, home, relay, relay_address, messages, frames, policy = sys.argv[1:8]
messages, frames = int(messages), int(frames)

def emit(**fields):
    print(json.dumps(fields), flush=True)

async def read_line():
    return json.loads(await asyncio.to_thread(sys.stdin.readline))

async def main():
    async with asyncio.timeout(120), auralink.connect(home, backend="embedded") as mesh:
        started = time.monotonic()
        server = await turn_server(mesh, relay, addresses=[relay_address])
        credentials_s = time.monotonic() - started
        pc = RTCPeerConnection(rtc_configuration(IceConfig(servers=(server,), transport_policy=policy)))
        done = asyncio.get_running_loop().create_future()
        received = []
        video = {"frames": 0}

        async def count_frames(track):
            while video["frames"] < frames:
                await track.recv()
                video["frames"] += 1

        tasks = []
        @pc.on("track")
        def on_track(track):
            if track.kind == "video":
                tasks.append(asyncio.ensure_future(count_frames(track)))

        if role == "offer":
            channel = pc.createDataChannel("chat")
            pc.addTrack(VideoStreamTrack())
            opened = asyncio.get_running_loop().create_future()
            closing = asyncio.get_running_loop().create_future()
            channel.on("open", lambda: opened.set_result(None))

            @channel.on("message")
            def on_message(message):
                if message == "bye":
                    closing.set_result(None)
                    return
                received.append(message)
                if len(received) == messages and not done.done():
                    done.set_result(None)

            await pc.setLocalDescription(await pc.createOffer())
            emit(event="sdp", sdp=pc.localDescription.sdp, type=pc.localDescription.type, credentials_s=credentials_s)
            answer = await read_line()
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
            await opened
            connected_s = time.monotonic() - started
            sent_at = time.monotonic()
            for i in range(messages):
                channel.send(f"message {i} " + "x" * 1000)
            await done
            round_trip_s = time.monotonic() - sent_at
            channel.send("bye")
            await closing  # the answerer has all it needs: now we may hang up
        else:
            @pc.on("datachannel")
            def on_datachannel(channel):
                @channel.on("message")
                def on_message(message):
                    if message == "bye":
                        done.set_result(channel)
                    else:
                        received.append(message)
                        channel.send(message)

            offer = await read_line()
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
            await pc.setLocalDescription(await pc.createAnswer())
            emit(event="sdp", sdp=pc.localDescription.sdp, type=pc.localDescription.type, credentials_s=credentials_s)
            channel = await done
            await asyncio.gather(*tasks)  # every frame we wait for is in: now the caller may hang up
            channel.send("bye")
            connected_s = round_trip_s = None
        if tasks:
            await asyncio.gather(*tasks)
        ice = pc.sctp.transport.transport
        candidates = [c.type for c in ice.iceGatherer.getLocalCandidates()]
        remote = [c.type for c in ice.getRemoteCandidates()]
        emit(
            event="done",
            received=len(received),
            ordered=received == [f"message {i} " + "x" * 1000 for i in range(len(received))],
            frames=video["frames"],
            local_candidates=candidates,
            remote_candidates=remote,
            turn_url=server.url,
            connected_s=connected_s,
            round_trip_s=round_trip_s,
        )
        await pc.close()

asyncio.run(main())
"""
"""One caller: TURN credentials over the mesh, then an aiortc peer connection through the relay."""


def read_event(proc: subprocess.Popen[str], what: str, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
    """The next JSON line ``proc`` prints (within ``timeout``), which must be event ``what``."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if selector.select(timeout=deadline - time.monotonic()):
                line = proc.stdout.readline()
                if not line:
                    break
                event = dict(json.loads(line))
                assert event["event"] == what, event
                return event
    finally:
        selector.close()
    proc.kill()
    _, err = proc.communicate(timeout=30)
    raise AssertionError(f"no {what} event within {timeout} s; stderr:\n{err[-4000:]}")


def send(proc: subprocess.Popen[str], event: dict[str, Any]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(event) + "\n")
    proc.stdin.flush()


def caller_home(root: Path, name: str, listen: str) -> Path:
    home = root / name
    assert cli(home, "init").returncode == 0
    save_config(home / "config.toml", NodeConfig(listen=(listen,), mdns=False))
    return home


def scrape(net: Any, name: str) -> dict[str, float]:
    """The relay's ``auralink_turn_*`` samples, read from inside its namespace."""
    url = f"http://{net.relay_ip}:{METRICS_PORT}/metrics"
    code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=10).read().decode())"
    text = net.relay.run(sys.executable, "-c", code, timeout=30).stdout
    out = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


@pytest.mark.parametrize("policy", ["relay", "all"])
def test_callers_behind_symmetric_nats_talk_through_the_relays_turn_server(tmp_path: Path, policy: str) -> None:
    with Lab() as lab:
        net = nat_lab(lab, "symmetric")
        relay_home = tmp_path / "relay"
        assert cli(relay_home, "init").returncode == 0
        relay = Daemon(
            relay_home,
            "--relay",
            "--metrics",
            f"{net.relay_ip}:{METRICS_PORT}",
            listen=f"{net.relay_ip}:{PORT}",
            prefix=net.relay.argv(),
        )
        try:
            status = cli_json(relay_home, "status")
            assert status["turn"] == f"turn:{net.relay_ip}:3478?transport=udp"
            callers = {}
            for role, name, host, ip in (
                ("offer", "alice", net.host_a, net.private_a),
                ("answer", "bob", net.host_b, net.private_b),
            ):
                home = caller_home(tmp_path, name, f"{ip}:{PORT}")
                callers[role] = host.popen(
                    sys.executable,
                    "-c",
                    CALLER,
                    role,
                    str(home),
                    relay.aura_id,
                    f"{net.relay_ip}:{PORT}",
                    str(MESSAGES),
                    str(FRAMES),
                    policy,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            offer = read_event(callers["offer"], "sdp")
            assert "typ relay" in offer["sdp"]
            assert ("typ host" in offer["sdp"]) == (policy == "all")  # "all" tries the private addresses too
            assert f"{net.relay_ip} " in offer["sdp"]  # the relayed candidates are on the relay's address
            send(callers["answer"], offer)
            answer = read_event(callers["answer"], "sdp")
            send(callers["offer"], answer)
            during = scrape(net, "auralink_turn_allocations ")
            alice, bob = read_event(callers["offer"], "done"), read_event(callers["answer"], "done")
            after = scrape(net, "auralink_turn_")
        finally:
            relay.stop()
    print(
        f"[{policy}] TURN credentials {offer['credentials_s'] * 1000:.0f} ms;"
        f" connected {alice['connected_s']:.2f} s after start;"
        f" {MESSAGES} x 1 kB echoed in {alice['round_trip_s'] * 1000:.0f} ms; {bob['frames']} video frames"
    )
    assert alice["received"] == MESSAGES and alice["ordered"]  # every message came back, in order
    assert bob["received"] == MESSAGES
    assert bob["frames"] == FRAMES  # and the video track carried frames end to end
    for side in (alice, bob):
        expected = {"relay"} if policy == "relay" else {"host", "relay"}
        assert set(side["local_candidates"]) == expected and set(side["remote_candidates"]) == expected
        assert urllib.parse.urlparse(side["turn_url"]).path.startswith(f"{net.relay_ip}:3478")
    assert during["auralink_turn_allocations"] == 2
    relayed = after['auralink_turn_bytes_total{direction="to_peers"}']
    assert relayed > 2 * MESSAGES * 1000  # both directions of the echo went through the TURN server
    assert after['auralink_turn_credentials_total{result="issued"}'] == 2
