"""A 4-party room on one box: an SFU and four participants, each an embedded mesh node.

    python examples/room.py --seconds 5

The room's owner is a bare identity that only signs grants. Every participant publishes moving
test video (320x240, 15 fps) and a tone of its own pitch, and subscribes to the three others'
video and audio; the script prints one JSON line with the video frames and audio frames (20 ms
each) each participant received per publisher, and a chat message. Needs the ``calls``
extra and a non-loopback address on this machine (aioice never offers 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from aiortc import MediaStreamTrack
from av import VideoFrame

import auralink
from auralink.calls.grants import Capability, Grant, RoomId
from auralink.calls.media import tone
from auralink.calls.room import Room, RoomServer
from auralink.identity import Identity


class TestVideo(MediaStreamTrack):
    """Moving bars at 15 fps."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def recv(self) -> VideoFrame:
        await asyncio.sleep(1 / 15)
        y = ((np.arange(320)[None, :] + 8 * self.count) % 256).astype(np.uint8).repeat(240, axis=0)
        frame = VideoFrame.from_ndarray(np.concatenate([y, np.full((120, 320), 128, np.uint8)]), format="yuv420p")
        frame.pts, frame.time_base = self.count * 6000, Fraction(1, 90000)
        self.count += 1
        return frame


async def main(seconds: float) -> None:
    owner = Identity.generate()  # the room's owner: signs grants, needs no node
    room = RoomId(owner.aura_id, "demo")
    now = int(time.time())
    with tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as stack:
            meshes = []
            for name in ("sfu", "ann", "ben", "cat", "dan"):
                home = Path(tmp) / name
                subprocess.run(
                    ["auralink-node", "--home", str(home), "init", "--handle", name], check=True, capture_output=True
                )
                meshes.append(await stack.enter_async_context(auralink.connect(home, listen=["127.0.0.1:0"])))
            sfu, people = meshes[0], meshes[1:]
            await stack.enter_async_context(RoomServer(sfu, owners=[owner.aura_id]))
            address = (await sfu.status())["listen"][0]
            rooms = []
            for mesh in people:
                await mesh.dial(sfu.identity.aura_id, [address])
                grant = Grant.create(
                    owner, room, mesh.identity.aura_id, Capability.participant(), not_before=now, expires_at=now + 600
                )
                rooms.append(await stack.enter_async_context(Room(mesh, sfu.identity.aura_id, grant, slots=3)))
            for i, r in enumerate(rooms):
                await r.publish(TestVideo())
                await r.publish(tone(330.0 + 110.0 * i))
            subscriptions = {
                (r.mesh.identity.handle, p.identity.handle): await r.subscribe(p.identity.aura_id, lambda _: None)
                for r in rooms
                for p in people
                if p is not r.mesh
            }
            heard = {
                pair: await r.subscribe(p.identity.aura_id, lambda _: None, kind="audio")
                for r in rooms
                for p in people
                if p is not r.mesh and (pair := (r.mesh.identity.handle, p.identity.handle))
            }
            await rooms[0].send_chat("hello from ann")
            await asyncio.sleep(seconds)
            chat = await rooms[1].next_event()
            while not hasattr(chat, "text"):
                chat = await rooms[1].next_event()
            received = {f"{a} <- {b}": s.frames_received for (a, b), s in subscriptions.items()}
            audio = {f"{a} <- {b}": s.frames_received for (a, b), s in heard.items()}
            print(
                json.dumps(
                    {
                        "seconds": seconds,
                        "frames_received": received,
                        "audio_frames_received": audio,
                        "ben_heard": chat.text,
                    }
                )
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A 4-party room on one box.")
    parser.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(main(parser.parse_args().seconds))
