"""Does a slower VP8 encoder pay? libvpx's ``cpu-used`` against the tuned-static anchor (issue 6).

Usage::

    nice -n 10 python -m benchmarks.aic.effort      # writes benchmarks/results/aic-effort-<date>.json

Each evaluation clip of :mod:`benchmarks.aic.evaluate` (``bikes``; ``bigbuckbunny`` scaled to
640x360; ``carphone``, which is training data) is coded exactly as the tuned-static anchor there
(:func:`benchmarks.aic.evaluate.code`: aiortc's own ``Vp8Encoder``, CBR, realtime, denoiser off
through AIC's per-encoder options, at the anchor's five bitrates) with only libvpx's ``cpu-used``
changed, and scored by VMAF v0.6.1 (mean and 5th percentile) at the source size. Each setting's
BD-rate (VMAF and VMAF p5, ``bjontegaard`` PCHIP) is taken against ``cpu-used -6``, aiortc's own
setting and the anchor's.

What ``cpu-used`` means for VP8 in realtime mode (libvpx ``vp8/encoder/encodeframe.c``): a negative
value pins the speed level to its absolute value (aiortc's -6 is speed 6; speeds 0-3 use the
rate-distortion mode decision, 4 and up the fast one); zero or a positive value lets libvpx pick the
speed itself from the measured encode time (``vp8_auto_select_speed``), aiming at
``(16 - cpu_used) / 16`` of the frame interval. So ``0`` is not "slowest": it is libvpx's own
CPU-headroom adaptation at a 100% budget, and its result depends on how busy the machine is.

Encode time: every ``Vp8Encoder.encode`` call is timed, wall clock (``perf_counter``) and CPU time
of the calling thread (``thread_time``; aiortc codes these sizes with one libvpx thread, in the
thread that calls ``encode``). The wall clock is what a real-time sender must fit in its frame
interval (40 ms at 25 fps), and it includes waiting for a core on a shared machine; the thread
time does not. The load average is recorded before and after each clip.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.codecs.vpx import Vp8Encoder, number_of_threads

from auralink.aic.controller import TUNED_VP8_OPTIONS, adopt_encoder
from benchmarks.aic import evaluate, quality

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = (-6, -4, -3, -2, -1, 0)
"""``cpu-used`` values coded; -6 (aiortc's) is the anchor, 0 is libvpx's automatic speed."""
ANCHOR = -6


class TimedEncoder(Vp8Encoder):
    """Hands each frame to ``inner`` and records how long its ``encode`` took (wall and thread CPU)."""

    def __init__(self, inner: Vp8Encoder) -> None:
        super().__init__()
        self.inner = inner
        self.wall_ms: list[float] = []
        self.cpu_ms: list[float] = []

    def encode(self, frame: av.frame.Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        wall, cpu = time.perf_counter(), time.thread_time()
        out = self.inner.encode(frame, force_keyframe)
        self.cpu_ms.append((time.thread_time() - cpu) * 1000)
        self.wall_ms.append((time.perf_counter() - wall) * 1000)
        return out


def _timing(values: list[float]) -> dict[str, float]:
    return {
        "mean": float(np.mean(values)),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "max": float(np.max(values)),
    }


def code_one(source: evaluate.Source, cpu_used: int, target_bps: int, reference: Path) -> dict[str, Any]:
    """The tuned-static anchor's coding at one rate, with ``cpu-used`` set; scores and encode times."""
    options = {**TUNED_VP8_OPTIONS, "cpu-used": str(cpu_used)}
    encoder = adopt_encoder(Vp8Encoder(), floor=1_000, ceiling=50_000_000, options=options)
    encoder.set_target(target_bps)
    timed = TimedEncoder(encoder)
    with tempfile.TemporaryDirectory(prefix="aic-effort-") as folder:
        shown = Path(folder) / "shown.yuv"
        coded = evaluate.code(source, timed, lambda frame: frame, shown)
        scores = quality.score(shown, reference, source.width, source.height, source.fps)
    return {
        "cpu_used": cpu_used,
        "target_bps": target_bps,
        "bitrate_bps": coded["bitrate_bps"],
        "keyframes": coded["keyframes"],
        "vmaf_mean": scores.vmaf_mean,
        "vmaf_p5": scores.vmaf_p5,
        "psnr_y": scores.psnr_y_mean,
        "encode_wall_ms": _timing(timed.wall_ms),
        "encode_cpu_ms": _timing(timed.cpu_ms),
    }


def summarise(rows: list[dict[str, Any]], fps: float) -> dict[str, Any]:
    """Per setting: BD-rates against the anchor, encode times, share of the frame interval."""
    anchor = [r for r in rows if r["cpu_used"] == ANCHOR]
    budget_ms = 1000.0 / fps
    out: dict[str, Any] = {"bd_rate_interpolation": "pchip", "frame_interval_ms": budget_ms}
    for setting in sorted({r["cpu_used"] for r in rows}):
        mine = [r for r in rows if r["cpu_used"] == setting]
        entry: dict[str, Any] = {}
        for metric in ("vmaf_mean", "vmaf_p5"):
            entry[f"bd_rate_{metric}_vs_anchor_pct"] = quality.bd_rate(
                [r["bitrate_bps"] for r in anchor],
                [r[metric] for r in anchor],
                [r["bitrate_bps"] for r in mine],
                [r[metric] for r in mine],
            )
        for clock in ("wall", "cpu"):
            means = [r[f"encode_{clock}_ms"]["mean"] for r in mine]
            p95s = [r[f"encode_{clock}_ms"]["p95"] for r in mine]
            entry[f"encode_{clock}_ms_mean"] = float(np.mean(means))
            entry[f"encode_{clock}_ms_p95_worst_rate"] = float(np.max(p95s))
        entry["p95_wall_share_of_frame_interval"] = entry["encode_wall_ms_p95_worst_rate"] / budget_ms
        out[str(setting)] = entry
    return out


def _versions() -> dict[str, str]:
    names = ("aiortc", "av", "imageio-ffmpeg", "bjontegaard")
    return {name: metadata.version(name) for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", nargs="*", default=[clip.name for clip in evaluate.CLIPS])
    parser.add_argument("--settings", nargs="*", type=int, default=list(SETTINGS))
    parser.add_argument("--frames", type=int, default=None, help="first N frames of each clip (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if ANCHOR not in args.settings:
        parser.error(f"--settings must include the anchor {ANCHOR}")
    report: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "versions": _versions(),
        "cpus": multiprocessing.cpu_count(),
        "niceness": os.nice(0),
        "method": "see benchmarks/aic/effort.py",
        "clips": {},
    }
    for clip in evaluate.CLIPS:
        if clip.name not in args.clips:
            continue
        source = evaluate.load(clip, args.frames)
        load_before = os.getloadavg()
        rows = []
        with tempfile.TemporaryDirectory(prefix="aic-effort-ref-") as folder:
            reference = evaluate.write_reference(source, Path(folder) / "reference.yuv")
            rates = [c["target_bps"] for c in evaluate.configs(source) if c["kind"] == "static"]
            for setting in args.settings:
                for rate in rates:
                    row = code_one(source, setting, rate, reference)
                    row["load_average_1min"] = os.getloadavg()[0]
                    rows.append(row)
                    print(json.dumps({"clip": clip.name} | row), flush=True)
        report["clips"][clip.name] = {
            "held_out": clip.held_out,
            "size": [source.width, source.height],
            "fps": source.fps,
            "frames": len(source.frames),
            "libvpx_threads": number_of_threads(source.width * source.height, multiprocessing.cpu_count()),
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
            "rows": rows,
            "summary": summarise(rows, source.fps),
        }
        print(json.dumps({"clip": clip.name, "summary": report["clips"][clip.name]["summary"]}, indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"aic-effort-{report['date']}.json"
    path.write_text(json.dumps(report, indent=1, sort_keys=True))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
