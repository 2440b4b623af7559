"""Call setup from handle to first frame, and glass-to-glass latency, between two real daemons.

Prints one JSON object on stdout and nothing else (progress goes to stderr).

Two ``auralink-node up`` daemons (alice and bob, with handles) run on loopback. This process is
the app on both sides, as two SDK meshes on the daemons' control sockets
(``auralink.connect(home, backend="daemon")``): signaling streams are proxied through each
daemon, media runs in this process through aiortc (host candidates on this machine's
non-loopback address; aioice never offers 127.0.0.1).

Bob answers every call, sending a stamped 320x240 test video at 15 fps and a tone. Alice places
``--calls`` calls to ``@bob.aura`` (sending the same kind of media), one after another, and for
each one records where the setup time went, from the moment ``mesh.call("@bob.aura")`` is
entered:

* ``resolve``: the handle to a key (alice learned bob's record from identify when she first
  dialled him, so after the first call this is the record cache: say so when quoting it);
* ``signaling``: offer to answer over ``auralink/signal/1`` through both daemons;
* ``connect``: ICE and DTLS;
* ``first_frame``: the whole thing, handle to the first decoded video frame from bob.
  **Goal: p50 <= 300 ms.**

Each call then runs ``--hold`` seconds; every stamped frame alice decodes says when bob's
track made it (the monotonic clock is the same for both sides on one host), so its age on
arrival is the glass-to-glass latency estimate: capture (generation) to decoded frame,
including the encoder, the network, the jitter buffer and the decoder, but not a display.

Last, the SFU's CPU per participant: ``benchmarks/rooms.py`` runs in a subprocess (an SFU
process forwarding encoded VP8 for 4 participants who each subscribe to the 3 others) and its
``sfu_cpu_per_participant_pct`` is copied under ``sfu`` (``--no-sfu`` skips it).

Usage::

    python benchmarks/calls.py                # 20 calls, 3 s each; SFU measured for 10 s
    python benchmarks/calls.py --quick        # 3 calls, 1 s each; SFU for 3 s: a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import auralink
from auralink.calls.media import read_stamp, stamped_video, tone
from auralink.mesh import Mesh


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start_daemon(home: Path, handle: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    subprocess.run(["auralink-node", "--home", str(home), "init", "--handle", handle], check=True, capture_output=True)
    proc = subprocess.Popen(
        ["auralink-node", "--home", str(home), "up", "--listen", "127.0.0.1:0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    assert ready.get("event") == "ready", ready
    return proc, ready


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": round(statistics.median(values) * 1000, 1) if values else None,
        "p95_ms": pct(values, 0.95),
        "n": len(values),
    }


async def answer(bob: Mesh) -> None:
    async for invite in bob.incoming_calls():
        await invite.accept(audio=tone(660), video=stamped_video())


async def measure(alice: Mesh, bob: Mesh, calls: int, hold: float) -> dict[str, Any]:
    phases: dict[str, list[float]] = {"resolve": [], "signaling": [], "connect": [], "first_frame": []}
    ages: list[float] = []
    async with asyncio.TaskGroup() as tasks:
        answering = tasks.create_task(answer(bob))
        for number in range(calls):
            call = await alice.call("@bob.aura", audio=tone(), video=stamped_video(), data=True)
            first = asyncio.get_running_loop().create_future()

            def arrived(frame: Any, first: asyncio.Future[None] = first) -> None:
                stamp = read_stamp(frame)
                if stamp is not None:
                    ages.append(stamp.age_ms() / 1000)
                if not first.done():
                    first.set_result(None)

            (await call.track("video")).on_frame(arrived)
            async with asyncio.timeout(10):
                await first
            stats = await call.stats()
            for name, values in phases.items():
                value = getattr(stats, name)
                if value is not None:
                    values.append(value)
            await asyncio.sleep(hold)  # holding the call open to sample frame ages
            await call.hangup()
            log(f"call {number + 1}/{calls}: first frame {stats.first_frame:.3f} s, path {stats.path}")
        answering.cancel()
    return {
        "setup_to_first_frame": summary(phases["first_frame"]),
        "phases": {name: summary(values) for name, values in phases.items()},
        "glass_to_glass": summary(ages),
        "goal_first_frame_p50_ms": 300,
    }


async def run(calls: int, hold: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        procs = []
        try:
            alice_proc, _ = start_daemon(root / "alice", "alice")
            procs.append(alice_proc)
            bob_proc, bob_ready = start_daemon(root / "bob", "bob")
            procs.append(bob_proc)
            async with (
                auralink.connect(root / "alice", backend="daemon") as alice,
                auralink.connect(root / "bob", backend="daemon") as bob,
            ):
                await alice.dial(auralink.AuraID.parse(bob_ready["aura_id"]), bob_ready["listen"])
                log("daemons up; alice knows @bob.aura from identify")
                return await measure(alice, bob, calls, hold)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)


def sfu_cost(duration: float) -> dict[str, Any]:
    """SFU CPU per participant with 4 participants, from benchmarks/rooms.py in a subprocess."""
    log(f"measuring the SFU for {duration:g} s (benchmarks/rooms.py)")
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("rooms.py")), "--participants", "4", "--duration", str(duration)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    (run,) = json.loads(done.stdout)["runs"]
    return {
        "participants": run["participants"],
        "cpu_per_participant_pct_of_a_core": run["sfu_cpu_per_participant_pct"],
        "cpu_cores": run["sfu_cpu_cores"],
        "fps_per_track_min": run["fps_per_track_min"],
        "forwarding": "encoded VP8 (no decode, no re-encode)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds each call stays up")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-sfu", dest="sfu", action="store_false", help="skip the SFU CPU measurement")
    args = parser.parse_args()
    calls, hold = (3, 1.0) if args.quick else (args.calls, args.hold)
    started = time.monotonic()
    result = asyncio.run(run(calls, hold))
    if args.sfu:
        result["sfu"] = sfu_cost(3.0 if args.quick else 10.0)
    print(
        json.dumps(
            {
                "benchmark": "calls",
                "date": datetime.date.today().isoformat(),
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "calls": calls,
                "hold_s": hold,
                "video": "stamped test pattern 320x240 @ 15 fps, VP8 (aiortc defaults), plus Opus tone",
                **result,
                "wall_s": round(time.monotonic() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
