"""End-to-end AIC benchmark (issue 6, item 8): two aiortc peers, 30 s of a real clip, bytes on the wire, VMAF.

Usage::

    nice -n 10 python -m benchmarks.aic.e2e [--clip bikes] [--seconds 30]

Writes ``benchmarks/results/aic-e2e-<date>-<clip>-<mode>.json`` and prints it.

Method
======

Two ``RTCPeerConnection`` objects in one process, configured with
``auralink.calls.ice.rtc_configuration(IceConfig())`` (no STUN or TURN server, so nothing leaves
the machine). aioice never offers 127.0.0.1, so ICE pairs the host's own non-loopback address with
itself; the packets go through the kernel's UDP stack but no wire.

The caller sends one of the evaluation's clips (:data:`benchmarks.aic.evaluate.CLIPS`; ``bikes`` by
default: 640x272, 25 fps), looped to ``--seconds`` and paced in real time, with each frame's
``pict_type`` reset. The call runs twice:

* **default**: the clip track as it is; aiortc's VP8 encoder starts at 500 kbps and REMB raises it
  towards 1.5 Mbps;
* **AIC**: the same track wrapped by :class:`~auralink.aic.controller.AICController` (``--mode``,
  the packaged VMAF model, its per-encoder options, REMB as the budget, told the clip's frame
  rate), with the hint marks in the RTP header extension.

**Bytes on the wire**: the caller's DTLS transport counts every SRTP and SRTCP packet it sends
(``getStats()``'s ``transport`` entry); 28 bytes of IPv4 and UDP header are added per packet. The
rate is also sampled every second. **Quality**: the callee writes every frame it decodes, upscaled
(bicubic) to the source size where AIC sent it smaller, at its place in the clip (by RTP
timestamp); a frame that never arrived is shown as the last one that did; then VMAF v0.6.1 (mean
and 5th percentile), PSNR-Y and SSIM against the looped source, by libvmaf.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import json
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from auralink.aic import HintEngine, Mode
from auralink.aic.controller import AICController
from auralink.aic.rtp import DEFAULT_EXTENSION_ID, HintMark, attach_receiver
from auralink.calls.ice import IceConfig, rtc_configuration
from benchmarks.aic import evaluate, quality, sweep

ROOT = Path(__file__).resolve().parents[2]
VIDEO_CLOCK = 90_000
IP_UDP_HEADER = 28
END_OF_CLIP = 3.0
"""Seconds without a frame after which the callee takes the clip as ended."""


class ClipTrack(MediaStreamTrack):
    """Plays ``frames`` in a loop for ``count`` frames, paced at ``fps`` in real time."""

    kind = "video"

    def __init__(self, frames: tuple[av.VideoFrame, ...], fps: float, count: int) -> None:
        super().__init__()
        self._frames, self._fps, self._count = frames, fps, count
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._index >= self._count:
            self.stop()
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._index / self._fps - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # a camera's pace, not synchronisation
        source = self._frames[self._index % len(self._frames)]
        frame = av.VideoFrame.from_ndarray(source.to_ndarray(), format="yuv420p")
        frame.pts = round(self._index * VIDEO_CLOCK / self._fps)
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        self._index += 1
        return frame


async def call(  # noqa: PLR0915 - one call, set up, run and measured in order
    source: evaluate.Source, count: int, shown_path: Path, *, aic: bool, mode: Mode = Mode.ADAPTIVE
) -> dict[str, Any]:
    """One call; returns its wire bytes, frames and AIC metrics, and writes what the callee showed."""
    caller = RTCPeerConnection(rtc_configuration(IceConfig()))
    callee = RTCPeerConnection(rtc_configuration(IceConfig()))
    track: MediaStreamTrack = ClipTrack(source.frames, source.fps, count)
    controller: AICController | None = None
    if aic:
        controller = AICController(HintEngine(mode), source_fps=source.fps)  # the camera's known rate
        track = controller.wrap(track)
    sender = caller.addTrack(track)
    if controller is not None:
        controller.attach(sender, rtp_extension_id=DEFAULT_EXTENSION_ID)
    marks: list[HintMark] = []
    received = 0
    done = asyncio.Event()
    ticks = VIDEO_CLOCK / source.fps
    frame_bytes = source.width * source.height * 3 // 2

    async def receive(remote: MediaStreamTrack) -> None:
        nonlocal received
        first_pts: int | None = None
        written = 0
        last = bytes([128]) * frame_bytes
        with shown_path.open("wb") as sink:
            try:
                while written < count:
                    async with asyncio.timeout(END_OF_CLIP):
                        frame = await remote.recv()
                    assert isinstance(frame, av.VideoFrame)
                    assert frame.pts is not None
                    received += 1
                    first_pts = frame.pts if first_pts is None else first_pts
                    index = round(((frame.pts - first_pts) % (1 << 32)) / ticks)
                    while written < min(index, count):  # frames that never came: the last one stays up
                        sink.write(last)
                        written += 1
                    if (frame.width, frame.height) != (source.width, source.height):
                        frame = frame.reformat(width=source.width, height=source.height, interpolation="BICUBIC")
                    last = sweep.yuv_bytes(frame.reformat(format="yuv420p"))
                    if written == index:
                        sink.write(last)
                        written += 1
            except (MediaStreamError, TimeoutError):  # the clip ended (the remote track never ends by itself)
                pass
            while written < count:
                sink.write(last)
                written += 1
        done.set()

    tasks: list[asyncio.Task[None]] = []

    @callee.on("track")
    def on_track(remote: MediaStreamTrack) -> None:
        tasks.append(asyncio.get_running_loop().create_task(receive(remote)))

    samples: list[tuple[float, int]] = []
    started = time.perf_counter()
    try:
        await caller.setLocalDescription(await caller.createOffer())
        await callee.setRemoteDescription(caller.localDescription)
        if aic:
            attach_receiver(callee.getReceivers()[0].transport, marks.append)
        await callee.setLocalDescription(await callee.createAnswer())
        await caller.setRemoteDescription(callee.localDescription)
        async with asyncio.timeout(count / source.fps + 60):
            while not done.is_set():
                with_stats = await _transport_stats(caller)
                samples.append((time.perf_counter() - started, with_stats["bytesSent"]))
                try:
                    async with asyncio.timeout(1.0):
                        await done.wait()
                except TimeoutError:
                    pass
        stats = await _transport_stats(caller)
    finally:
        for task in tasks:
            task.cancel()
        await caller.close()
        await callee.close()
    duration = count / source.fps
    wire = stats["bytesSent"] + IP_UDP_HEADER * stats["packetsSent"]
    per_second = [(b1 - b0) * 8 / (t1 - t0) / 1000 for (t0, b0), (t1, b1) in itertools.pairwise(samples) if t1 > t0]
    result: dict[str, Any] = {
        "aic": aic,
        "mode": mode.value if aic else None,
        "frames_sent_by_source": count,
        "frames_received": received,
        "srtp_bytes": stats["bytesSent"],
        "packets": stats["packetsSent"],
        "wire_bytes": wire,
        "wire_kbps": wire * 8 / duration / 1000,
        "kbps_each_second": [round(v) for v in per_second],
    }
    if controller is not None:
        metrics = controller.metrics()
        result |= {
            "hints": metrics.hints,
            "fallbacks": metrics.fallbacks,
            "bitrate_changes": metrics.bitrate_changes,
            "frames_dropped_by_aic": metrics.frames_dropped,
            "final_target_bps": metrics.target_bitrate_bps,
            "final_remb_bps": metrics.remb_bps,
            "hint_marks_received": len(marks),
            "cpu_used_at_end": metrics.cpu_used,
            "effort_changes": metrics.effort_changes,
            "encoder_late": metrics.encoder_late,
            "switches_declined": metrics.switches_declined,
        }
    return result


async def _transport_stats(pc: RTCPeerConnection) -> dict[str, int]:
    report = await pc.getStats()
    for entry in report.values():
        if entry.type == "transport":
            return {"bytesSent": int(entry.bytesSent), "packetsSent": int(entry.packetsSent)}
    return {"bytesSent": 0, "packetsSent": 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default="bikes", choices=[c.name for c in evaluate.CLIPS])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--mode", default="adaptive", choices=[m.value for m in Mode], help="AIC's mode")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    clip = next(c for c in evaluate.CLIPS if c.name == args.clip)
    source = evaluate.load(clip, None)
    count = round(args.seconds * source.fps)
    report: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "clip": clip.name,
        "size": [source.width, source.height],
        "fps": source.fps,
        "seconds": count / source.fps,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="aic-e2e-") as folder:
        reference = Path(folder) / "reference.yuv"
        with reference.open("wb") as sink:
            for index in range(count):
                sink.write(sweep.yuv_bytes(source.frames[index % len(source.frames)]))
        for aic in (False, True):
            shown = Path(folder) / f"shown-{aic}.yuv"
            run = asyncio.run(call(source, count, shown, aic=aic, mode=Mode(args.mode)))
            scores = quality.score(shown, reference, source.width, source.height, source.fps)
            run |= {
                "vmaf_mean": scores.vmaf_mean,
                "vmaf_p5": scores.vmaf_p5,
                "psnr_y": scores.psnr_y_mean,
                "ssim": scores.ssim_mean,
            }
            report["runs"].append(run)
            print(json.dumps(run), flush=True)
    default, with_aic = report["runs"]
    report["wire_saving_pct"] = 100 * (1 - with_aic["wire_bytes"] / default["wire_bytes"])
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"aic-e2e-{report['date']}-{clip.name}-{args.mode}.json"
    path.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
