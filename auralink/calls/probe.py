"""Test calls: an echo service that answers, and a probe that calls it and measures the call.

Theory of operation
-------------------
:func:`answer_echo` answers incoming calls and sends back what it receives: every video and
audio frame (through :func:`~auralink.calls.media.pushed_track`, re-encoded) and every
data-channel message. :func:`probe_call` calls a target with a stamped test video (or a file)
and a tone, sends timestamped data messages, and reports what a user asks of a test call: how
long setup took and where the time went (resolve, signaling, ICE and DTLS, first frame), the
frames and bytes, the path, the data round trip, and the *echo latency*: a frame's stamp
(:func:`~auralink.calls.media.read_stamp`) says when the probe made it, so when the echo sends it
back, its age is the glass-to-glass round trip through two encoders, two networks and two
decoders. ``auralink-node call`` and ``auralink-node answer`` are these two functions, and
``benchmarks/calls.py`` measures with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auralink.calls.media import FileSource, pushed_track, read_stamp, stamped_video, tone
from auralink.errors import CallError
from auralink.identity import AuraID

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack

    from auralink.calls.call import Call, Invite
    from auralink.mesh import Mesh

__all__ = ["ProbeReport", "answer_echo", "probe_call"]

DATA_PING_INTERVAL = 0.5
"""Seconds between the probe's data-channel pings."""


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """What one test call measured."""

    peer: str
    """The AuraID called."""
    call_id: str
    """The call id, hex."""
    stats: dict[str, Any]
    """:meth:`~auralink.calls.call.CallStats.as_dict` at the end of the call."""
    echo_latency_ms: list[float]
    """Glass-to-glass round trips of echoed stamped frames, in order."""
    data_rtt_ms: list[float]
    """Data-channel round trips, in order."""
    duration_s: float
    """How long the call lasted after it connected."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; latencies are summarised (p50, p95, count)."""
        return {
            "peer": self.peer,
            "call_id": self.call_id,
            **self.stats,
            "echo_latency_ms": _summary(self.echo_latency_ms),
            "data_rtt_ms": _summary(self.data_rtt_ms),
            "duration_s": round(self.duration_s, 3),
        }


def _summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"p50": None, "p95": None, "count": 0}
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 2),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "count": len(ordered),
    }


async def probe_call(
    mesh: Mesh,
    target: AuraID | str,
    *,
    duration: float = 5.0,
    video_file: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> ProbeReport:
    """Call ``target``, send test media (or ``video_file``) for ``duration`` seconds, hang up, report."""
    say = progress or (lambda _message: None)
    source: FileSource | None = None
    video: MediaStreamTrack | bool
    audio: MediaStreamTrack | bool
    if video_file is not None:
        source = FileSource(video_file)
        video = source.video or True
        audio = source.audio or True
    else:
        video, audio = stamped_video(), tone()
    say(f"calling {target}")
    call = await mesh.call(target, audio=audio, video=video, data=True)
    say(f"connected in {(await call.stats()).setup or 0:.3f} s; sending for {duration:g} s")
    echoes: list[float] = []
    pings: list[float] = []

    def echoed(frame: Any) -> None:
        stamp = read_stamp(frame)
        if stamp is not None:
            echoes.append(float(stamp.age_ms()))

    started = time.monotonic()
    try:
        (await call.track("video")).on_frame(echoed)
        with contextlib.suppress(TimeoutError):  # the call's duration is up
            async with asyncio.timeout(duration):
                while True:
                    sent = time.monotonic()
                    call.send(f"ping {sent}")
                    with contextlib.suppress(TimeoutError):  # a lost ping counts as no sample
                        async with asyncio.timeout(DATA_PING_INTERVAL * 4):
                            while (await call.receive()) != f"ping {sent}":
                                continue  # the echo of an earlier, late ping
                            pings.append((time.monotonic() - sent) * 1000)
                    await asyncio.sleep(max(0.0, sent + DATA_PING_INTERVAL - time.monotonic()))  # pacing the pings
    finally:
        elapsed = time.monotonic() - started
        await call.hangup()
        if source is not None:
            source.close()
    return ProbeReport(str(call.peer), call.call_id, (await call.stats()).as_dict(), echoes, pings, elapsed)


async def answer_echo(
    mesh: Mesh, *, calls: int | None = None, on_call: Callable[[Call, str], None] | None = None
) -> int:
    """Answer incoming calls and echo their media and data until each ends; stop after ``calls`` calls.

    ``on_call(call, what)`` hears ``"answered"`` and ``"ended"``. Returns the number of calls served.
    """
    served = 0
    async with asyncio.TaskGroup() as tasks:
        async for invite in mesh.incoming_calls():
            tasks.create_task(_echo(invite, on_call))
            served += 1
            if calls is not None and served >= calls:
                break
    return served


async def _echo(invite: Invite, on_call: Callable[[Call, str], None] | None) -> None:
    from auralink.calls.messages import MediaKinds  # noqa: PLC0415

    tracks: dict[str, Callable[[Any], None]] = {}
    kwargs: dict[str, Any] = {}
    for kind, flag in (("audio", MediaKinds.AUDIO), ("video", MediaKinds.VIDEO)):
        if invite.media & flag:
            track, push = pushed_track(kind)  # type: ignore[arg-type]
            kwargs[kind] = track
            tracks[kind] = push
    try:
        call = await invite.accept(**kwargs)
    except CallError:
        return
    if on_call:
        on_call(call, "answered")
    for kind, push in tracks.items():
        if kind in call.tracks:  # added while the offer was applied, if the caller sends that kind
            call.tracks[kind].on_frame(push)
    with contextlib.suppress(CallError):
        while True:
            message = await call.receive()
            call.send(message)
    await call.wait_ended()
    if on_call:
        on_call(call, "ended")
