"""What the room SFU costs: CPU of the SFU process per participant, with every participant publishing.

Prints one JSON object on stdout (progress on stderr). The SFU (an embedded node with a
:class:`~auralink.calls.room.RoomServer`) runs in its own process, so that its CPU time
(``/proc/<pid>/stat``, user + system) is its alone; the participants run in this process, each
an embedded mesh with a :class:`~auralink.calls.room.Room`, each publishing synthetic 320x240
video at 20 fps and subscribing to every other participant (so the SFU receives N tracks and
forwards N x (N-1)). Media is aiortc over the host's non-loopback address, host candidates only.

With ``--audio`` (the default runs both ways), every participant also publishes a tone
(Opus, 50 packets/s) and subscribes to every other participant's audio, so the SFU forwards
N x (N-1) audio tracks too.

For each N in ``--participants``: join, publish, subscribe, wait for 2 s of frames on every
subscription, then measure ``--duration`` seconds. Reported per N: the SFU's CPU in cores
(CPU seconds / wall seconds), that divided by N (``sfu_cpu_per_participant``, in % of one core),
per forwarded track, the frames forwarded per second, and the received frame rate per track
(min and median). The SFU forwards encoded frames (:mod:`auralink.calls.sfu`): no decoding or
encoding happens in its process, which the per-track figure shows.

Usage::

    python benchmarks/rooms.py                      # N = 2 and 4, video only then video + audio, 10 s each
    python benchmarks/rooms.py --participants 4 --duration 20 --media video+audio
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack
from av import VideoFrame

import auralink
from auralink.calls.grants import Capability, Grant, RoomId
from auralink.calls.media import tone
from auralink.calls.room import Room, RoomServer
from auralink.identity import AuraID, Identity

FPS = 20


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


class SyntheticVideo(MediaStreamTrack):
    """320x240 frames at ``FPS`` with motion, paced on the loop clock."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self.count / FPS - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        y = np.full((240, 320), 64, np.uint8)
        y[40:, :] = (np.arange(320)[None, :] + self.count * 4) % 256
        frame = VideoFrame.from_ndarray(np.concatenate([y, np.full((120, 320), 128, np.uint8)]), format="yuv420p")
        frame.pts = round((loop.time() - self._start) * 90000)
        frame.time_base = Fraction(1, 90000)
        self.count += 1
        return frame


def init_home(home: Path, name: str) -> None:
    done = subprocess.run(
        ["auralink-node", "--home", str(home), "init", "--handle", name], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def serve(home: Path, owner: str) -> None:
    """The child: an SFU until stdin closes; prints its address first and its counters last."""
    async with (
        auralink.connect(home, backend="embedded", listen=["127.0.0.1:0"]) as mesh,
        RoomServer(mesh, owners=[AuraID.parse(owner)]) as server,
    ):
        status = await mesh.status()
        print(json.dumps({"aura_id": str(mesh.identity.aura_id), "address": status["listen"][0]}), flush=True)
        await asyncio.to_thread(sys.stdin.read)
        log(json.dumps(server.stats()))


async def measure(n: int, duration: float, root: Path, audio: bool) -> dict[str, Any]:
    owner = Identity.generate()
    tag = f"{n}{'a' if audio else 'v'}"
    room_id = RoomId(owner.aura_id, f"bench{tag}")
    init_home(root / f"sfu{tag}", "sfu")
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(root / f"sfu{tag}"), "--owner", str(owner.aura_id)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    hello = json.loads(await asyncio.to_thread(child.stdout.readline))
    sfu = AuraID.parse(hello["aura_id"])
    try:
        async with contextlib.AsyncExitStack() as stack:
            meshes = []
            for i in range(n):
                init_home(root / f"p{tag}-{i}", f"p{n}-{i}")
                mesh = await stack.enter_async_context(
                    auralink.connect(root / f"p{tag}-{i}", backend="embedded", listen=["127.0.0.1:0"])
                )
                await mesh.dial(sfu, [hello["address"]])
                meshes.append(mesh)
            now = int(time.time())
            rooms = []
            for mesh in meshes:
                grant = Grant.create(
                    owner,
                    room_id,
                    mesh.identity.aura_id,
                    Capability.participant(),
                    not_before=now - 5,
                    expires_at=now + 3600,
                )
                slots = n - 1 if audio else 0
                rooms.append(await stack.enter_async_context(Room(mesh, sfu, grant, slots=n - 1, audio_slots=slots)))
            for i, room in enumerate(rooms):
                await room.publish(SyntheticVideo())
                if audio:
                    await room.publish(tone(330.0 + 110.0 * i))
            subscriptions = [
                await room.subscribe(other.identity.aura_id)
                for room in rooms
                for other in meshes
                if other.identity.aura_id != room.me
            ]
            heard = [
                await room.subscribe(other.identity.aura_id, kind="audio")
                for room in rooms
                for other in meshes
                if audio and other.identity.aura_id != room.me
            ]
            drains = [asyncio.create_task(_drain(s)) for s in [*subscriptions, *heard]]
            loop = asyncio.get_running_loop()
            warm = loop.time() + 60
            while min(s.frames_received for s in subscriptions) < 2 * FPS and loop.time() < warm:
                await asyncio.sleep(0.2)  # a benchmark's warm-up pacing, not synchronisation
            before = [s.frames_received for s in subscriptions]
            heard_before = [s.frames_received for s in heard]
            cpu0, wall0 = cpu_seconds(child.pid), time.monotonic()
            await asyncio.sleep(duration)
            cpu1, wall1 = cpu_seconds(child.pid), time.monotonic()
            after = [s.frames_received for s in subscriptions]
            heard_after = [s.frames_received for s in heard]
            for task in drains:
                task.cancel()
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    wall = wall1 - wall0
    cores = (cpu1 - cpu0) / wall
    rates = [(b - a) / wall for a, b in zip(before, after, strict=True)]
    audio_rates = [(b - a) / wall for a, b in zip(heard_before, heard_after, strict=True)]
    tracks = n * (n - 1) * (2 if audio else 1)
    extra = {}
    if audio:
        extra = {
            "audio_packets_per_track_min": round(min(audio_rates), 1),
            "audio_packets_per_track_median": round(statistics.median(audio_rates), 1),
        }
    return {
        "participants": n,
        "media": "video+audio" if audio else "video",
        "forwarded_tracks": tracks,
        "seconds": round(wall, 2),
        "sfu_cpu_cores": round(cores, 4),
        "sfu_cpu_per_participant_pct": round(100 * cores / n, 2),
        "sfu_cpu_per_forwarded_track_pct": round(100 * cores / tracks, 2),
        "forwarded_fps_total": round(sum(rates), 1),
        "fps_per_track_min": round(min(rates), 1),
        "fps_per_track_median": round(statistics.median(rates), 1),
        **extra,
    }


async def _drain(subscription: Any) -> None:
    async for _ in subscription:
        pass


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for media in args.media:
            for n in args.participants:
                log(f"{n} participants, {media}, {args.duration} s ...")
                runs.append(await measure(n, args.duration, Path(tmp), media == "video+audio"))
                log(json.dumps(runs[-1]))
    print(
        json.dumps(
            {
                "benchmark": "rooms",
                "date": datetime.date.today().isoformat(),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "video": {"width": 320, "height": 240, "fps": FPS, "codec": "VP8"},
                "audio": {"codec": "Opus", "packet_ms": 20, "source": "a sine tone per participant"},
                "forwarding": "encoded VP8 frames and Opus packets (no decode, no re-encode, no mixing at the SFU)",
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--media", nargs="+", choices=["video", "video+audio"], default=["video", "video+audio"])
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--owner", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        asyncio.run(serve(arguments.serve, arguments.owner))
    else:
        asyncio.run(main(arguments))
