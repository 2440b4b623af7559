"""Full-reference scores for AIC's evaluation: VMAF v0.6.1, PSNR-Y and SSIM through FFmpeg's libvmaf.

Theory of operation
===================

Debian's ffmpeg has no libvmaf; the static FFmpeg inside the ``imageio-ffmpeg`` wheel has it, with
the ``vmaf_v0.6.1`` model built in, and runs offline. :func:`score` hands it two raw ``yuv420p``
files of the same size (what the receiver shows, upscaled to the reference size, and the
reference) and reads its per-frame JSON log: ``vmaf``, ``psnr_y`` and ``float_ssim``. Pooling is
ours: the mean, and the 5th percentile of the per-frame VMAF (the bad moments a mean hides).

Rate-quality helpers:

* :func:`bd_rate` is the ``bjontegaard`` package's BD-rate with PCHIP interpolation (the
  interpolation is stated wherever a number is reported), on the upper hull of each curve;
* :func:`rate_at_quality` inverts a curve with PCHIP on log-rate: the bitrate that reaches a
  quality, or None outside the measured range (never extrapolated);
* :func:`quality_at_rate` is the other direction.

The heavy packages are imported lazily; they sit in the ``aic-bench`` extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def ffmpeg_exe() -> str:
    """The FFmpeg binary of the ``imageio-ffmpeg`` wheel (it has libvmaf)."""
    try:
        import imageio_ffmpeg  # type: ignore[import-untyped]  # noqa: PLC0415 - benchmark-only dependency
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SystemExit("VMAF needs imageio-ffmpeg: pip install 'auralink[aic-bench]'") from exc
    return str(imageio_ffmpeg.get_ffmpeg_exe())


@dataclass(frozen=True, slots=True)
class Scores:
    """Per-frame scores of one distorted sequence against its reference."""

    vmaf: tuple[float, ...]
    """VMAF v0.6.1 of each frame."""
    psnr_y: tuple[float, ...]
    """PSNR of the luma of each frame, dB."""
    ssim: tuple[float, ...]
    """SSIM (libvmaf's ``float_ssim``, luma) of each frame."""

    @property
    def vmaf_mean(self) -> float:
        """Mean VMAF over frames."""
        return float(np.mean(self.vmaf))

    @property
    def vmaf_p5(self) -> float:
        """5th percentile of the per-frame VMAF."""
        return float(np.percentile(self.vmaf, 5))

    @property
    def psnr_y_mean(self) -> float:
        """Mean per-frame PSNR-Y, dB."""
        return float(np.mean(self.psnr_y))

    @property
    def ssim_mean(self) -> float:
        """Mean SSIM."""
        return float(np.mean(self.ssim))


def score(distorted: Path, reference: Path, width: int, height: int, fps: float) -> Scores:
    """VMAF v0.6.1, PSNR-Y and SSIM of each frame of two raw ``yuv420p`` files (one libvmaf thread)."""
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-r", f"{fps:.6f}"]
    with tempfile.TemporaryDirectory(prefix="aic-vmaf-") as folder:
        log = Path(folder) / "vmaf.json"
        graph = (
            "[0:v][1:v]libvmaf=model=version=vmaf_v0.6.1:feature=name=psnr|name=float_ssim"
            f":log_fmt=json:log_path={log}:n_threads=1"
        )
        command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *raw, "-i", str(distorted)]
        command += [*raw, "-i", str(reference), "-lavfi", graph, "-f", "null", "-"]
        subprocess.run(command, check=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
        frames = json.loads(log.read_text())["frames"]
    metrics = [frame["metrics"] for frame in frames]
    return Scores(
        vmaf=tuple(float(m["vmaf"]) for m in metrics),
        psnr_y=tuple(float(m["psnr_y"]) for m in metrics),
        ssim=tuple(float(m["float_ssim"]) for m in metrics),
    )


def upper_hull(rates: Sequence[float], qualities: Sequence[float]) -> tuple[list[float], list[float]]:
    """The points sorted by rate, keeping only those better than every cheaper one (a monotone curve)."""
    points = sorted(zip(rates, qualities, strict=True))
    kept_r: list[float] = []
    kept_q: list[float] = []
    for rate, quality in points:
        if kept_r and rate <= kept_r[-1] * 1.0001:
            kept_q[-1] = max(kept_q[-1], quality)
            continue
        if kept_q and quality <= kept_q[-1]:
            continue
        kept_r.append(rate)
        kept_q.append(quality)
    return kept_r, kept_q


def rate_at_quality(rates: Sequence[float], qualities: Sequence[float], quality: float) -> float | None:
    """Bitrate at which the curve reaches ``quality`` (PCHIP on log-rate), or None outside its range."""
    from scipy.interpolate import PchipInterpolator  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    r, q = upper_hull(rates, qualities)
    if len(r) < 2 or not q[0] <= quality <= q[-1]:
        return None
    return float(10 ** PchipInterpolator(q, np.log10(r))(quality))


def quality_at_rate(rates: Sequence[float], qualities: Sequence[float], rate: float) -> float | None:
    """Quality of the curve at ``rate`` (PCHIP on log-rate), or None outside its range."""
    from scipy.interpolate import PchipInterpolator  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    pairs = sorted(zip(rates, qualities, strict=True))
    r = [p[0] for p in pairs]
    if len(r) < 2 or not r[0] <= rate <= r[-1] or len(set(r)) != len(r):
        return None
    return float(PchipInterpolator(np.log10(r), [p[1] for p in pairs])(np.log10(rate)))


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
) -> float | None:
    """BD-rate of test against anchor in percent (negative: test needs fewer bits), PCHIP; None if < 4 points."""
    import bjontegaard  # type: ignore[import-untyped]  # noqa: PLC0415 - benchmark-only dependency

    ar, aq = upper_hull(anchor_rates, anchor_quality)
    tr, tq = upper_hull(test_rates, test_quality)
    if len(ar) < 4 or len(tr) < 4 or min(aq[-1], tq[-1]) <= max(aq[0], tq[0]):
        return None
    return float(bjontegaard.bd_rate(ar, aq, tr, tq, method="pchip", require_matching_points=False, min_overlap=0.0))
