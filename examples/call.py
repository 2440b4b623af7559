"""A two-party call by handle: video, audio and data, with what arrived printed as JSON lines.

Each side needs a node home with a handle (``auralink-node --home H init --handle NAME``).
Answer on one side, call from the other::

    python examples/call.py answer --home /tmp/bob --listen 127.0.0.1:7702
    python examples/call.py call --home /tmp/alice --to @bob.aura \\
        --bob <bob's AuraID> --addr 127.0.0.1:7702 [--video clip.mp4] [--seconds 5]

``--bob``/``--addr`` introduce alice to bob's node once (identify then hands over his signed
``@bob.aura`` claim); on a mesh with a DHT (``auralink-node join``) the handle alone is enough.
If ``auralink-node --home H up`` runs for a home, the app uses that daemon; otherwise it starts an
embedded node. Press Ctrl-C to stop the answering side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import auralink
from auralink.calls.media import FileSource, read_stamp, stamped_video, tone


def emit(**event: Any) -> None:
    print(json.dumps(event, default=str), flush=True)


async def answer(home: Path, listen: str) -> None:
    async with auralink.connect(home, listen=[listen]) as mesh:
        emit(event="answering", aura_id=str(mesh.identity.aura_id), listen=(await mesh.status())["listen"])
        async for invite in mesh.incoming_calls():
            emit(event="ringing", peer=str(invite.peer), media=invite.media.name)
            call = await invite.accept(video=stamped_video(), audio=tone(660))
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(echo_data(call))
                ended = await call.wait_ended()
            emit(event="ended", reason=ended.reason.name, **(await call.stats()).as_dict())


async def echo_data(call: Any) -> None:
    try:
        while True:
            call.send(await call.receive())
    except auralink.AuralinkError:
        return


async def place(
    home: Path, target: str, bob: str | None, addr: str | None, *, video: Path | None, seconds: float
) -> None:
    async with auralink.connect(home) as mesh:
        if bob and addr:
            await mesh.dial(auralink.AuraID.parse(bob), [addr])
        source = FileSource(video) if video else None
        media = (source.video, source.audio) if source else (stamped_video(), tone())
        async with await mesh.call(target, video=media[0] or True, audio=media[1] or True, data=True) as call:
            emit(event="connected", path=(await call.stats()).as_dict()["path"])
            call.send("hello from alice")
            emit(event="data", echoed=await call.receive())
            ages: list[int] = []
            (await call.track("video")).on_frame(
                lambda frame: ages.append(stamp.age_ms()) if (stamp := read_stamp(frame)) else None
            )
            await asyncio.sleep(seconds)  # the call's length
            stats = (await call.stats()).as_dict()
        emit(event="done", glass_to_glass_ms_median=sorted(ages)[len(ages) // 2] if ages else None, **stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("answer")
    a.add_argument("--home", type=Path, required=True)
    a.add_argument("--listen", default="127.0.0.1:0")
    c = sub.add_parser("call")
    c.add_argument("--home", type=Path, required=True)
    c.add_argument("--to", required=True, help="@handle or AuraID")
    c.add_argument("--bob", help="the callee's AuraID, to introduce the nodes")
    c.add_argument("--addr", help="the callee's node address")
    c.add_argument("--video", type=Path)
    c.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    try:
        if args.command == "answer":
            asyncio.run(answer(args.home, args.listen))
        else:
            asyncio.run(place(args.home, args.to, args.bob, args.addr, video=args.video, seconds=args.seconds))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
