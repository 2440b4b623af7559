"""An upper bound on per-scene bitrate adaptation: the best per-scene choice of CBR rates, with hindsight.

Usage::

    nice -n 10 python -m benchmarks.aic.oracle     # writes benchmarks/results/aic-oracle-<date>.json

Each held-out clip is coded whole by the tuned static encoder (denoiser off) at seven bitrates
(0.025 to 0.2 bits per pixel), keeping every frame's bytes and VMAF. Scenes are cut where
:class:`~auralink.aic.features.FeatureExtractor` reports a scene change (at least 10 frames apart).
For each bitrate, the oracle tries every assignment of the seven rates to the scenes and keeps the
one with the highest mean VMAF that spends no more bits than CBR at that bitrate. Each scene's bits
and VMAF are taken from the whole-clip run at its rate, so switching costs nothing here (a real
switch re-creates the encoder and sends a keyframe): this is an upper bound on what moving bits
between scenes could buy.
"""

from __future__ import annotations

import datetime
import itertools
import json
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.codecs.vpx import vp8_depayload
from av.video.frame import PictureType

from auralink.aic import FeatureExtractor
from benchmarks.aic import evaluate, quality, sweep

ROOT = Path(__file__).resolve().parents[2]
BITS_PER_PIXEL = (0.025, 0.035, 0.05, 0.07, 0.1, 0.14, 0.2)


def scenes_of(source: evaluate.Source) -> list[tuple[int, int]]:
    """``(first, end)`` frame ranges between the cuts the feature extractor reports (>= 10 frames apart)."""
    extractor = FeatureExtractor()
    cuts = [0]
    for index, frame in enumerate(source.frames):
        plane = frame.planes[0]
        luma = np.frombuffer(memoryview(plane), np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
        if extractor.push(luma, source.fps).scene_change and index - cuts[-1] >= 10:
            cuts.append(index)
    return list(itertools.pairwise([*cuts, len(source.frames)]))


def per_frame(source: evaluate.Source, rate: int, reference: Path, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Bytes and VMAF of every frame when the whole clip is coded by the tuned static encoder at ``rate``."""
    encoder, _ = evaluate.tuned_static(rate)
    decoder = av.CodecContext.create("libvpx", "r")
    sizes = []
    shown = folder / "shown.yuv"
    last = b""
    with shown.open("wb") as sink:
        for index, original in enumerate(source.frames):
            frame = av.VideoFrame.from_ndarray(original.to_ndarray(), format="yuv420p")
            frame.pts, frame.time_base = round(index * 90_000 / source.fps), Fraction(1, 90_000)
            frame.pict_type = PictureType.NONE
            payloads, _ = encoder.encode(frame)
            sizes.append(sum(len(p) for p in payloads))
            for picture in decoder.decode(av.Packet(b"".join(vp8_depayload(p) for p in payloads))):
                last = sweep.yuv_bytes(picture.reformat(format="yuv420p"))
            sink.write(last)
    scores = quality.score(shown, reference, source.width, source.height, source.fps)
    return np.array(sizes, dtype=np.float64), np.array(scores.vmaf)


def oracle(
    rates: list[int], runs: dict[int, tuple[np.ndarray, np.ndarray]], scenes: list[tuple[int, int]], rate: int
) -> tuple[float, tuple[int, ...], float]:
    """The best mean VMAF, the per-scene rates and the bytes, spending no more than CBR at ``rate``."""
    budget = runs[rate][0].sum()
    frames = len(runs[rate][0])
    best = (-1.0, (rate,) * len(scenes), budget)
    for combo in itertools.product(rates, repeat=len(scenes)):
        spent = sum(runs[r][0][a:b].sum() for r, (a, b) in zip(combo, scenes, strict=True))
        if spent > budget:
            continue
        vmaf = sum(runs[r][1][a:b].sum() for r, (a, b) in zip(combo, scenes, strict=True)) / frames
        if vmaf > best[0]:
            best = (float(vmaf), combo, float(spent))
    return best


def main() -> int:
    out: dict[str, Any] = {"date": datetime.date.today().isoformat(), "clips": {}}
    for clip in (c for c in evaluate.CLIPS if c.held_out):
        source = evaluate.load(clip, None)
        scenes = scenes_of(source)
        pixel_rate = source.width * source.height * source.fps
        rates = [round(bpp * pixel_rate, -3) for bpp in BITS_PER_PIXEL]
        seconds = len(source.frames) / source.fps
        with tempfile.TemporaryDirectory(prefix="aic-oracle-") as name:
            folder = Path(name)
            reference = evaluate.write_reference(source, folder / "reference.yuv")
            runs = {rate: per_frame(source, rate, reference, folder) for rate in rates}
        points = []
        for rate in rates:
            vmaf, combo, spent = oracle(rates, runs, scenes, rate)
            points.append(
                {
                    "cbr_kbps": float(runs[rate][0].sum() * 8 / seconds / 1000),
                    "cbr_vmaf": float(runs[rate][1].mean()),
                    "oracle_kbps": spent * 8 / seconds / 1000,
                    "oracle_vmaf": vmaf,
                    "oracle_scene_targets_kbps": [r / 1000 for r in combo],
                }
            )
            print(clip.name, json.dumps(points[-1]), flush=True)
        out["clips"][clip.name] = {"scenes": scenes, "points": points}
    path = ROOT / "benchmarks" / "results" / f"aic-oracle-{out['date']}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
