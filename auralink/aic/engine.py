"""The AIC hint engine: from content and network statistics to encoder settings, with a deadline.

Theory of operation
===================

For each frame, :meth:`HintEngine.hint` takes the frame's :class:`~auralink.aic.features.FrameStats`,
the latest :class:`NetworkStats` and ``now``, and returns a :class:`Hint`: a target bitrate, a
resolution scale and a frame rate, the quality it expects them to give, how sure it is, an id, and
a deadline. It is a pure core in the shape of aiortc's ``rate.py``: no clock, no I/O, and every
method that depends on time takes ``now`` (monotonic seconds).

Choosing settings
-----------------
1. **Budget.** The network can carry ``usable = bandwidth * (1 - loss) * headroom`` bits per
   second, where ``headroom`` shrinks from 0.9 as RTT and jitter grow (queues are building), down to
   a floor of 0.45 (:func:`usable_bandwidth`). No hint ever asks for more, whatever the mode, the
   content, the floor ``min_bitrate`` or the hysteresis.
2. **Size.** The picture keeps its full size unless the budget is below
   :data:`CODABLE_BITS_PER_PIXEL` there (VP8 cannot hold such a rate: at its worst quantizer it
   overshoots); then it takes the largest scale of :data:`SCALE_LADDER` that the budget can code.
   Measured under VMAF, a smaller picture never paid while the full one could hold the rate (on
   ``carphone`` at 30 kbps, scale 0.75 scored 8 VMAF points under full size at the same bitrate;
   ``python -m benchmarks.aic.scales`` for the held-out clips), so the rate model's own
   resampling term does not choose the size.
3. **Demand and target.** Each :class:`Mode` aims at a quality in the rate model's unit:
   aggressive the lowest, conservative the highest (the model's ``quality_targets``). The rate
   model says how many bits reach that quality at the full size and frame rate; the demand is
   clamped to ``[min_bitrate, max_bitrate]``, and the target is ``min(demand, usable)``.
   The frame rate is never cut just to save bits: a
   held frame is a bad frame for the viewer, which a mean quality target hides (on ``carphone`` at
   65-120 kbps, half rate had a 5th-percentile VMAF 20-26 points under full rate at the same
   bitrate). Only when even the smallest scale gets under :data:`STARVED_BITS_PER_PIXEL` does the
   engine take the frame rate the rate model rates best at that bitrate.
4. **Hysteresis.** aiortc re-creates the VP8 encoder and forces a keyframe on any bitrate change of
   more than 10%. So a new target within ``hysteresis`` (10%) of the previous one keeps the previous
   settings, unless the previous bitrate no longer fits the budget.

Because demand grows with the quality target and with content complexity, and the budget only
shrinks as the network worsens, the target is monotone: a worse network never raises it, more
complex content never lowers it, and aggressive <= adaptive <= conservative (before hysteresis,
which depends on history).

Deadline fallback
-----------------
A hint is valid until ``issued_at + deadline`` (50 ms by default: the hint cycle of issue 6). An
adapter that gets a hint late, for example from a remote hint service, calls
:meth:`HintEngine.apply_or_native`: a stale hint is dropped, the caller's native encoder settings
apply instead, and :attr:`HintEngine.fallbacks` counts it for metrics.

The rate model
--------------
A :class:`RateQualityModel` says how many bits reach a quality, and what quality a bitrate buys;
it also names its quality unit's target per mode (``quality_targets``) and how far to trust it
(``confidence``, the ceiling of each hint's confidence). By default the engine uses
:func:`auralink.aic.model.default_rate_model`: the model trained on VP8 encodes and shipped as
``rate_model.npz`` (VMAF v0.6.1, see :mod:`auralink.aic.model`), or, if that file is missing or
corrupt, :class:`AnalyticRateModel`.

:class:`AnalyticRateModel` is a **placeholder**: a hand-written, monotone analytic model with
plausible constants, not fitted to any encode, in a VMAF-like 0..100 unit. Treat its bitrates and
predicted qualities as rough, which is why its confidence is 0.5. Its form:

* complexity ``c = (0.5 + SI / 100) * (1 + TI / 10) ** 0.8``;
* codec quality at bitrate ``R``, scored at the coded size:
  ``Qc = 100 * (1 - exp(-sqrt(R / (K * c * (P / P_ref) ** 0.75 * (f / 30) ** 0.6))))``, where ``P``
  is the number of coded pixels, ``P_ref = 640 * 480``, ``f`` the coded frame rate and ``K`` 40 kbps;
* scored back at the source size and frame rate, downscaling costs
  ``60 * (1 - scale) * SI / (SI + 30)`` points (upscaling blurs detail) and dropping frames
  ``60 * (1 - f / f_source) * TI / (TI + 20)`` points (judder).

With these constants a 640x480, 30 fps talking head (SI 40, TI 5) needs about 350 kbps for quality
93 and a sports clip (SI 80, TI 40) about four times as much.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from auralink.aic.features import FrameStats
from auralink.errors import LocalProtocolError

__all__ = [
    "CODABLE_BITS_PER_PIXEL",
    "DEFAULT_DEADLINE",
    "DEFAULT_HYSTERESIS",
    "FPS_LADDER",
    "MODE_QUALITY",
    "SCALE_LADDER",
    "STARVED_BITS_PER_PIXEL",
    "AnalyticRateModel",
    "EncoderSettings",
    "Hint",
    "HintEngine",
    "Mode",
    "NetworkStats",
    "RateQualityModel",
    "usable_bandwidth",
]

DEFAULT_DEADLINE = 0.050
"""Seconds a hint stays valid after it is issued."""
DEFAULT_HYSTERESIS = 0.10
"""Relative bitrate change below which the previous settings are kept (aiortc re-creates its encoder above 10%)."""
SCALE_LADDER = (1.0, 0.75, 0.5, 0.375, 0.25)
"""Resolution scales the engine may choose, largest first."""
FPS_LADDER = (1.0, 0.5)
"""Fractions of the source frame rate the engine may choose, largest first."""
MIN_CODED_HEIGHT = 72
"""Smallest coded height, in pixels, that a downscaled rung may have."""
MIN_CODED_FPS = 5.0
"""Smallest coded frame rate that a reduced-frame-rate rung may have."""
CODABLE_BITS_PER_PIXEL = 0.02
"""Bits per pixel at full frame rate below which VP8 (at aiortc's worst quantizer, 56) cannot hold a
target, so the engine sends a smaller picture. Measured with the tuned encoder: at 0.025 bits per
pixel it held its target within 8% on bigbuckbunny, megamind and vtest and overshot by 34% on bikes
(fast motion); ``carphone`` overshot by 10% at 0.039, 35% at 0.029 and 100% at 0.02. Above it the
engine keeps the full size, which gave the higher VMAF at every bitrate measured."""
STARVED_BITS_PER_PIXEL = 0.02
"""Bits per pixel, at the smallest scale and full rate, below which the engine may also cut the frame rate."""
MAX_FEASIBLE_QUALITY = 99.5
"""Codec quality above which the rate model calls a target unreachable."""


class Mode(enum.Enum):
    """How hard to trade quality for bits."""

    CONSERVATIVE = "conservative"
    """Aim high: spend bits to keep quality close to the source."""
    ADAPTIVE = "adaptive"
    """The balanced default."""
    AGGRESSIVE = "aggressive"
    """Aim low: save the most bandwidth at a still acceptable quality."""


MODE_QUALITY: dict[Mode, float] = {Mode.AGGRESSIVE: 80.0, Mode.ADAPTIVE: 87.0, Mode.CONSERVATIVE: 93.0}
"""The VMAF-like quality each mode aims for."""


def _check_finite(
    value: float, what: str, *, low: float = 0.0, high: float = math.inf, open_low: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LocalProtocolError(f"{what} must be a finite number, not {value!r}")
    if value < low or value > high or (open_low and value == low):
        bounds = f"{'(' if open_low else '['}{low}, {high}]"
        raise LocalProtocolError(f"{what} must lie in {bounds}, not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class NetworkStats:
    """The latest view of the path to the receiver, from RTCP and the bandwidth estimator."""

    rtt_s: float
    """Round-trip time, in seconds."""
    loss: float
    """Fraction of packets lost, 0..1."""
    jitter_s: float
    """Interarrival jitter, in seconds."""
    bandwidth_bps: float
    """Estimated available bandwidth (for example REMB or transport-cc), in bits per second."""

    def __post_init__(self) -> None:
        _check_finite(self.rtt_s, "NetworkStats.rtt_s")
        _check_finite(self.loss, "NetworkStats.loss", high=1.0)
        _check_finite(self.jitter_s, "NetworkStats.jitter_s")
        _check_finite(self.bandwidth_bps, "NetworkStats.bandwidth_bps")


@dataclass(frozen=True, slots=True)
class EncoderSettings:
    """What an adapter applies to the encoder and the track."""

    bitrate_bps: int
    """Target bitrate of the encoder, in bits per second."""
    resolution_scale: float
    """Scale of each side of the frame, in (0, 1]."""
    fps: float
    """Frame rate to send, in frames per second."""

    def __post_init__(self) -> None:
        if isinstance(self.bitrate_bps, bool) or not isinstance(self.bitrate_bps, int) or self.bitrate_bps < 0:
            raise LocalProtocolError(
                f"EncoderSettings.bitrate_bps must be an int of at least 0, not {self.bitrate_bps!r}"
            )
        _check_finite(self.resolution_scale, "EncoderSettings.resolution_scale", high=1.0, open_low=True)
        _check_finite(self.fps, "EncoderSettings.fps", open_low=True)


@dataclass(frozen=True, slots=True)
class Hint:
    """One compression hint: settings for the next frames, valid until ``deadline``."""

    hint_id: int
    """Sequence number, unique per engine, carried to the receiver for correlation."""
    mode: Mode
    """The mode the hint was made in."""
    target_bitrate_bps: int
    """Encoder target bitrate, in bits per second; never above the network's usable bandwidth."""
    resolution_scale: float
    """Scale of each side of the frame, in (0, 1]."""
    fps: float
    """Frame rate to send, in frames per second."""
    predicted_quality: float
    """Expected quality, 0..100, in the rate model's unit (VMAF for the packaged model), at source size and rate."""
    confidence: float
    """How much to trust ``predicted_quality``, 0..1."""
    issued_at: float
    """When the hint was made (monotonic seconds)."""
    deadline: float
    """Monotonic time after which the hint is stale and must not be applied."""

    @property
    def settings(self) -> EncoderSettings:
        """The encoder settings this hint asks for."""
        return EncoderSettings(self.target_bitrate_bps, self.resolution_scale, self.fps)


def usable_bandwidth(net: NetworkStats) -> float:
    """Bits per second a sender may use: the estimate, less losses, less headroom for RTT and jitter."""
    headroom = 0.9 * max(0.5, 1.0 - 0.5 * net.rtt_s - 2.0 * net.jitter_s)
    return net.bandwidth_bps * (1.0 - net.loss) * headroom


class RateQualityModel(Protocol):
    """What the engine asks of a rate-quality model; the trained model will implement the same."""

    @property
    def quality_targets(self) -> Mapping[Mode, float]:
        """The quality, in this model's unit, each mode aims for."""
        ...

    @property
    def confidence(self) -> float:
        """How far predictions can be trusted, 0..1: the ceiling of a hint's confidence."""
        ...

    def required_bitrate(self, frame: FrameStats, quality: float, scale: float, fps: float) -> float:
        """Bits per second to reach ``quality`` (at source size and rate), or ``math.inf`` if out of reach.

        Must not decrease as ``quality``, SI or TI grow.
        """
        ...

    def predicted_quality(self, frame: FrameStats, bitrate_bps: float, scale: float, fps: float) -> float:
        """Quality, 0..100, scored at the source size and rate, when coding at these settings."""
        ...


@dataclass(frozen=True, slots=True)
class AnalyticRateModel:
    """The placeholder analytic rate-quality model described in the module docstring."""

    rate_constant_bps: float = 40_000.0
    """``K``: bits per second per unit of complexity and of the quality term at 640x480, 30 fps."""
    reference_pixels: int = 640 * 480
    """``P_ref``: the frame size the constant refers to."""
    pixel_exponent: float = 0.75
    """How bits grow with coded pixels (below 1: larger frames code more efficiently per pixel)."""
    fps_exponent: float = 0.6
    """How bits grow with coded frame rate (below 1: closer frames predict each other better)."""
    scale_penalty: float = 60.0
    """Quality points lost by coding at scale 0 a frame of very high SI."""
    fps_penalty: float = 60.0
    """Quality points lost by sending no frames of a clip of very high TI (the limit of judder)."""

    @property
    def quality_targets(self) -> Mapping[Mode, float]:
        """:data:`MODE_QUALITY`, VMAF-like."""
        return MODE_QUALITY

    @property
    def confidence(self) -> float:
        """0.5: the placeholder is not fitted to any encode."""
        return 0.5

    @staticmethod
    def complexity(frame: FrameStats) -> float:
        """How hard the content is to code: 1 for SI 50, TI 0; grows with SI and TI."""
        return (0.5 + frame.spatial_information / 100.0) * math.pow(1.0 + frame.temporal_information / 10.0, 0.8)

    def _penalty(self, frame: FrameStats, scale: float, fps: float) -> float:
        si, ti = frame.spatial_information, frame.temporal_information
        resolution_loss = self.scale_penalty * (1.0 - scale) * si / (si + 30.0)
        judder = self.fps_penalty * max(0.0, 1.0 - fps / frame.fps) * ti / (ti + 20.0)
        return resolution_loss + judder

    def _rate_unit(self, frame: FrameStats, scale: float, fps: float) -> float:
        pixels = frame.width * frame.height * scale * scale
        return (
            self.rate_constant_bps
            * self.complexity(frame)
            * math.pow(pixels / self.reference_pixels, self.pixel_exponent)
            * math.pow(fps / 30.0, self.fps_exponent)
        )

    def required_bitrate(self, frame: FrameStats, quality: float, scale: float, fps: float) -> float:
        """Invert the quality curve: ``R = unit * (-ln(1 - Qc / 100)) ** 2``."""
        codec_quality = quality + self._penalty(frame, scale, fps)
        if codec_quality > MAX_FEASIBLE_QUALITY:
            return math.inf
        if codec_quality <= 0.0:
            return 0.0
        return self._rate_unit(frame, scale, fps) * (-math.log1p(-codec_quality / 100.0)) ** 2

    def predicted_quality(self, frame: FrameStats, bitrate_bps: float, scale: float, fps: float) -> float:
        """The quality curve ``100 * (1 - exp(-sqrt(R / unit)))`` less the downscaling penalties."""
        codec_quality = 100.0 * -math.expm1(-math.sqrt(max(0.0, bitrate_bps) / self._rate_unit(frame, scale, fps)))
        return min(100.0, max(0.0, codec_quality - self._penalty(frame, scale, fps)))


def _codable_scale(frame: FrameStats, bitrate_bps: float, scales: list[float]) -> float:
    """The largest of ``scales`` (largest first) that ``bitrate_bps`` can code; else the smallest.

    A scale can be coded when it gets at least :data:`CODABLE_BITS_PER_PIXEL` at full frame rate.
    """
    for scale in scales:
        if bitrate_bps >= CODABLE_BITS_PER_PIXEL * frame.width * frame.height * scale * scale * frame.fps:
            return scale
    return scales[-1]


def _rungs(frame: FrameStats) -> list[tuple[float, float]]:
    """The (scale, fps) pairs worth trying for this frame, full size and full rate first."""
    rungs = []
    for scale in SCALE_LADDER:
        if scale < 1.0 and frame.height * scale < MIN_CODED_HEIGHT:
            continue
        for fraction in FPS_LADDER:
            fps = frame.fps * fraction
            if fraction < 1.0 and fps < MIN_CODED_FPS:
                continue
            rungs.append((scale, fps))
    return rungs


class HintEngine:
    """Turns frame and network statistics into :class:`Hint` objects; see the module docstring."""

    __slots__ = ("_deadline", "_hysteresis", "_last", "_max", "_min", "_model", "_next_id", "fallbacks", "mode")

    def __init__(
        self,
        mode: Mode = Mode.ADAPTIVE,
        *,
        deadline: float = DEFAULT_DEADLINE,
        min_bitrate: int = 100_000,
        max_bitrate: int = 4_000_000,
        hysteresis: float = DEFAULT_HYSTERESIS,
        model: RateQualityModel | None = None,
    ) -> None:
        if not isinstance(mode, Mode):
            raise LocalProtocolError(f"mode must be a Mode, not {mode!r}")
        self.mode = mode
        """The mode new hints are made in; may be changed between hints."""
        self._deadline = _check_finite(deadline, "deadline", open_low=True)
        self._min = _check_finite(min_bitrate, "min_bitrate")
        self._max = _check_finite(max_bitrate, "max_bitrate", open_low=True)
        if self._min > self._max:
            raise LocalProtocolError(f"min_bitrate {min_bitrate} is above max_bitrate {max_bitrate}")
        self._hysteresis = _check_finite(hysteresis, "hysteresis", high=1.0)
        if model is None:
            from auralink.aic.model import default_rate_model  # noqa: PLC0415 - model.py imports this module

            model = default_rate_model()
        self._model: RateQualityModel = model
        self._next_id = 0
        self._last: EncoderSettings | None = None
        self.fallbacks = 0
        """How many hints :meth:`apply_or_native` dropped as stale."""

    def hint(self, frame: FrameStats, net: NetworkStats, now: float) -> Hint:
        """Choose settings for the next frames; the hint is valid until ``now + deadline``."""
        now = _check_finite(now, "now", low=-math.inf)
        budget = min(usable_bandwidth(net), self._max)
        quality = self._model.quality_targets[self.mode]
        demand = self._model.required_bitrate(frame, quality, 1.0, frame.fps)
        target = min(max(demand, self._min), budget)
        rungs = _rungs(frame)
        scales = sorted({rung_scale for rung_scale, _ in rungs}, reverse=True)
        scale, fps = _codable_scale(frame, budget, scales), frame.fps
        smallest = scales[-1]
        if target < STARVED_BITS_PER_PIXEL * frame.width * frame.height * smallest * smallest * frame.fps:
            best = -1.0  # starved even at the smallest size: the frame rate the model rates best
            for rung_scale, rung_fps in rungs:
                if rung_scale == scale:
                    predicted = self._model.predicted_quality(frame, target, rung_scale, rung_fps)
                    if predicted > best:
                        best, fps = predicted, rung_fps
        settings = EncoderSettings(int(target), scale, fps)
        last = self._last
        if (
            last is not None
            and last.bitrate_bps <= budget
            and abs(settings.bitrate_bps - last.bitrate_bps) < self._hysteresis * last.bitrate_bps
        ):
            settings = EncoderSettings(last.bitrate_bps, last.resolution_scale, min(last.fps, frame.fps))
        self._last = settings
        predicted = self._model.predicted_quality(frame, settings.bitrate_bps, settings.resolution_scale, settings.fps)
        hint = Hint(
            hint_id=self._next_id,
            mode=self.mode,
            target_bitrate_bps=settings.bitrate_bps,
            resolution_scale=settings.resolution_scale,
            fps=settings.fps,
            predicted_quality=predicted,
            confidence=self._confidence(frame, net),
            issued_at=now,
            deadline=now + self._deadline,
        )
        self._next_id += 1
        return hint

    @property
    def model(self) -> RateQualityModel:
        """The rate-quality model in use."""
        return self._model

    def _confidence(self, frame: FrameStats, net: NetworkStats) -> float:
        """The model's confidence; less on cuts and rough paths."""
        confidence = min(1.0, max(0.0, self._model.confidence))
        if frame.scene_change:
            confidence *= 0.5
        confidence *= 1.0 - net.loss
        confidence /= 1.0 + net.jitter_s / 0.05
        return confidence

    def is_fresh(self, hint: Hint, now: float) -> bool:
        """Whether ``hint`` may still be applied at ``now`` (at or before its deadline)."""
        return now <= hint.deadline

    def apply_or_native(self, hint: Hint, now: float, native: EncoderSettings) -> EncoderSettings:
        """The hint's settings while it is fresh; otherwise ``native``, counted in :attr:`fallbacks`.

        Either way, the result becomes the reference for the next hint's hysteresis.
        """
        now = _check_finite(now, "now", low=-math.inf)
        if self.is_fresh(hint, now):
            chosen = hint.settings
        else:
            self.fallbacks += 1
            chosen = native
        self._last = chosen
        return chosen
