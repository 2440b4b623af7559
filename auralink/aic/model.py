"""The trained rate-quality model: VMAF (or PSNR-Y) from bitrate, size, frame rate and content, fitted to VP8 encodes.

Theory of operation
===================

``benchmarks/aic/train.py`` codes short runs of video with aiortc's own ``Vp8Encoder`` (its
real-time CBR settings, with AIC's per-encoder options: the denoiser off) over a grid of bitrates,
resolution scales and frame rates, and scores what a receiver shows, at the source size and rate,
by VMAF v0.6.1 (``metric = "vmaf"``, the packaged model) or by PSNR of the luma
(``metric = "psnr_y_db"``). It fits the error a receiver sees as the sum of three independent
errors, in the metric's error unit ``e``: VMAF points short of 100 (``e = 100 - VMAF``), or MSE
(``e = 255^2 / 10^(PSNR / 10)``):

* coding: ``log e_c = c0 + c1 log(R / (P f)) + c2 log P + c3 log f + c4 log(1 + SI) + c5 log(1 + TI)``,
  where ``R`` is the bitrate, ``P`` the coded pixels per frame and ``f`` the coded frame rate;
  ``c1 < 0`` and ``c4, c5 >= 0`` by construction of the fit;
* resampling, when the frame is sent at a scale ``s < 1`` and shown upscaled:
  ``e_s = exp(a + p log SI + q log(1 / s - 1))``;
* frame hold, when only a fraction ``h`` of the frames is sent: ``e_t = exp(b) * TI ** r * (1 - h)``.

The predicted quality is ``100 - (e_c + e_s + e_t)`` for VMAF, ``10 log10(255^2 / (e_c + e_s + e_t))``
for PSNR, and the bitrate for a target has a closed form: the coding error may use what the other
two leave of the target's error, or the target is out of reach (``math.inf``) when they already
exceed it. Both are monotone as
the :class:`~auralink.aic.engine.RateQualityModel` protocol asks: more bits never lower the
prediction, and a higher target or higher SI or TI never lower the bitrate.

The model brings its own :attr:`TrainedRateModel.quality_targets` per mode: VMAF 86, 91 and 95 for
the packaged VMAF model (32, 35 and 38 dB for a PSNR-Y one).

Files
-----
The weights ship as ``auralink/aic/rate_model.npz`` (a few hundred bytes of arrays and a JSON
``provenance`` string naming the data, the encoder, the package versions, the seed and the
cross-validated fit). :func:`load_rate_model` reads and checks a file and raises
:class:`~auralink.aic.errors.RateModelError` when it is missing, unreadable, of another format or
holds non-finite or wrongly signed weights. :func:`default_rate_model` is what
:class:`~auralink.aic.engine.HintEngine` uses when given no model: the packaged file, or, if it
cannot be used, the analytic placeholder with a logged warning.
"""

from __future__ import annotations

import json
import logging
import math
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from auralink.aic.engine import MODE_QUALITY, AnalyticRateModel, Mode, RateQualityModel
from auralink.aic.errors import RateModelError
from auralink.aic.features import FrameStats

__all__ = ["METRICS", "MODEL_FORMAT_VERSION", "TrainedRateModel", "default_rate_model", "load_rate_model"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

MODEL_FORMAT_VERSION = 1
"""The ``format_version`` this module reads."""
PACKAGED_MODEL = "rate_model.npz"
"""The weights' file name inside :mod:`auralink.aic`."""
METRICS = ("vmaf", "psnr_y_db")
"""The quality units a model file may be in."""
_PEAK = 255.0 * 255.0
_MAX_BITRATE = 1e12
"""Bitrates beyond this are reported as unreachable (``math.inf``)."""


@dataclass(frozen=True, slots=True)
class TrainedRateModel:
    """The fitted model described in the module docstring; build it with :func:`load_rate_model`."""

    codec: tuple[float, float, float, float, float, float]
    """``c0..c5`` of the coding error."""
    resample: tuple[float, float, float]
    """``a, p, q`` of the resampling error."""
    hold: tuple[float, float]
    """``b, r`` of the frame-hold error."""
    quality_targets: dict[Mode, float]
    """PSNR-Y, dB, each mode aims for."""
    confidence: float
    """Share of cross-validated predictions within 1.5 dB of the measurement, 0..1."""
    provenance: str
    """JSON: how, from what and with which versions the weights were made."""
    metric: str = "vmaf"
    """The unit of qualities: ``"vmaf"`` (VMAF v0.6.1) or ``"psnr_y_db"`` (PSNR of the luma, dB)."""

    def _error(self, quality: float) -> float:
        """The total error a quality allows."""
        if self.metric == "vmaf":
            return 100.0 - quality
        return _PEAK / math.pow(10.0, quality / 10.0)

    def _quality(self, error: float) -> float:
        if self.metric == "vmaf":
            return 100.0 - error
        return 10.0 * math.log10(_PEAK / error)

    def _side_mse(self, frame: FrameStats, scale: float, fps: float) -> float:
        side = 0.0
        si, ti = frame.spatial_information, frame.temporal_information
        if scale < 1.0 and si > 0.0:
            a, p, q = self.resample
            side += math.exp(a + p * math.log(si) + q * math.log(1.0 / scale - 1.0))
        if fps < frame.fps and ti > 0.0:
            b, r = self.hold
            side += math.exp(b + r * math.log(ti)) * (1.0 - fps / frame.fps)
        return side

    def _log_mse_at_unit_rate(self, frame: FrameStats, scale: float, fps: float) -> tuple[float, float]:
        """``(log mse_c - c1 log(R / (P f)), log(P f))``: the coding error's intercept for this frame."""
        c0, _, c2, c3, c4, c5 = self.codec
        pixels = max(1.0, frame.width * frame.height * scale * scale)
        intercept = (
            c0
            + c2 * math.log(pixels)
            + c3 * math.log(fps)
            + c4 * math.log1p(frame.spatial_information)
            + c5 * math.log1p(frame.temporal_information)
        )
        return intercept, math.log(pixels * fps)

    def required_bitrate(self, frame: FrameStats, quality: float, scale: float, fps: float) -> float:
        """Bits per second for ``quality`` (in :attr:`metric`) at these settings, or ``math.inf`` if out of reach."""
        budget = self._error(quality) - self._side_mse(frame, scale, fps)
        if budget <= 0.0:
            return math.inf
        intercept, log_pixel_rate = self._log_mse_at_unit_rate(frame, scale, fps)
        exponent = (math.log(budget) - intercept) / self.codec[1] + log_pixel_rate
        if exponent > math.log(_MAX_BITRATE):
            return math.inf
        return math.exp(exponent)

    def predicted_quality(self, frame: FrameStats, bitrate_bps: float, scale: float, fps: float) -> float:
        """Quality in :attr:`metric` (0..100), at the source size and rate when coding at these settings."""
        if bitrate_bps <= 0.0:
            return 0.0
        intercept, log_pixel_rate = self._log_mse_at_unit_rate(frame, scale, fps)
        log_codec = intercept + self.codec[1] * (math.log(bitrate_bps) - log_pixel_rate)
        total = math.exp(min(log_codec, 700.0)) + self._side_mse(frame, scale, fps)
        return min(100.0, max(0.0, self._quality(total)))


def _floats(archive: dict[str, np.ndarray], key: str, size: int, where: str) -> tuple[float, ...]:
    if key not in archive:
        raise RateModelError(where, f"no {key!r} array")
    values = np.asarray(archive[key], dtype=np.float64).reshape(-1)
    if values.size != size or not bool(np.isfinite(values).all()):
        raise RateModelError(where, f"{key!r} must hold {size} finite numbers, not {archive[key]!r}")
    return tuple(float(v) for v in values)


def load_rate_model(path: str | Path | None = None) -> TrainedRateModel:
    """Read and check a model file (by default the packaged one); raises :class:`RateModelError`."""
    if path is None:
        source = resources.files("auralink.aic").joinpath(PACKAGED_MODEL)
        where = f"auralink/aic/{PACKAGED_MODEL}"
    else:
        source = Path(path)
        where = str(path)
    try:
        with source.open("rb") as stream, np.load(stream, allow_pickle=False) as npz:
            archive = {key: npz[key] for key in npz.files}
    except FileNotFoundError as exc:
        raise RateModelError(where, "file not found; run benchmarks/aic/train.py") from exc
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise RateModelError(where, f"unreadable ({exc})") from exc
    version = _floats(archive, "format_version", 1, where)[0]
    if version != MODEL_FORMAT_VERSION:
        raise RateModelError(where, f"format_version {version:g}; this build reads {MODEL_FORMAT_VERSION}")
    metric = str(archive.get("metric", ""))
    if metric not in METRICS:
        raise RateModelError(where, f"metric {metric!r}; this build reads {', '.join(map(repr, METRICS))}")
    codec = _floats(archive, "codec", 6, where)
    resample = _floats(archive, "resample", 3, where)
    hold = _floats(archive, "hold", 2, where)
    targets = _floats(archive, "quality_targets", 3, where)
    confidence = _floats(archive, "confidence", 1, where)[0]
    if codec[1] >= 0.0 or codec[4] < 0.0 or codec[5] < 0.0 or resample[1] < 0 or resample[2] < 0 or hold[1] < 0:
        raise RateModelError(where, "weights break monotonicity (bits must help, complexity must cost)")
    if not targets[0] <= targets[1] <= targets[2] or not 0.0 <= confidence <= 1.0:
        raise RateModelError(where, "quality targets must be ordered and confidence in [0, 1]")
    provenance = str(archive.get("provenance", "{}"))
    try:
        json.loads(provenance)
    except ValueError as exc:
        raise RateModelError(where, "provenance is not JSON") from exc
    return TrainedRateModel(
        codec=(codec[0], codec[1], codec[2], codec[3], codec[4], codec[5]),
        resample=(resample[0], resample[1], resample[2]),
        hold=(hold[0], hold[1]),
        quality_targets={Mode.AGGRESSIVE: targets[0], Mode.ADAPTIVE: targets[1], Mode.CONSERVATIVE: targets[2]},
        confidence=confidence,
        provenance=provenance,
        metric=metric,
    )


def default_rate_model() -> RateQualityModel:
    """The packaged trained model; the analytic placeholder, with a warning, if the file cannot be used."""
    try:
        return load_rate_model()
    except RateModelError as exc:
        logger.warning("%s; using the analytic placeholder model (targets %s)", exc, MODE_QUALITY)
        return AnalyticRateModel()
