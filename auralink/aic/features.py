"""Content features for compression hints: spatial and temporal information from downscaled luma.

Theory of operation
===================

The hint engine needs to know how hard a frame is to code, within a small slice of each frame
interval (issue 6 asks for at most 2 ms per 640x480 frame). It uses the two content measures of
ITU-T P.910 (2022), computed on the luma plane:

* **SI**, spatial information: the standard deviation, over the pixels, of the magnitude of the
  Sobel gradient, ``sqrt(Gx**2 + Gy**2)`` with the unnormalised 3x3 kernels. Flat pictures score
  near 0; detailed ones 50 to 100 or more.
* **TI**, temporal information: the standard deviation, over the pixels, of the difference between
  this frame and the previous one. A still picture scores 0; fast motion 30 or more; a cut between
  unrelated scenes usually more than 40.

P.910 reports the maximum of each over a clip. These functions give the per-frame values and leave
the aggregation over time to the caller (the hint engine works frame by frame).

Downscaling
-----------
Both measures are taken on an *analysis grid*: the luma averaged over ``stride x stride`` blocks
(by default the stride that brings the frame down to about 160x120, so 4 for 640x480). Block
averaging, unlike plain subsampling, does not alias fine texture into noise. The Sobel kernels
measure a difference per pixel of the grid they run on, so SI is divided by the stride to express it
per full-resolution pixel; TI is a difference of pixel values and needs no correction. For content
whose detail is coarser than the stride, as with camera video of faces and rooms, the results stay
close to the full-resolution P.910 values; texture finer than the stride is averaged away and scores
lower. Pass ``stride=1`` for the exact full-resolution measure. Sobel gradients are computed only
on interior pixels, so the border adds no artificial edge.

Motion and scene changes
------------------------
``motion`` is a rough normal-flow estimate of the global motion, in full-resolution pixels per
frame: for a picture that moves by ``v`` between frames, ``dI/dt ~ -grad(I) . v``, so
``|v| ~ sqrt(2 * mean(dI/dt**2) / mean(|grad I|**2))`` for isotropic texture. It is reliable for
motions of up to about one stride per frame, and saturates beyond that.

``scene_change`` marks a cut. :func:`extract_features` is stateless, so it can only compare TI with a
fixed bound (:data:`SCENE_CHANGE_TI`). :class:`FeatureExtractor` keeps history: it flags a cut when
TI also jumps well above its recent average (so fast but continuous motion is not a cut), and it
keeps the previous frame on the analysis grid, so each frame is downscaled once.

Input rules
-----------
A luma plane is a 2-D ``numpy`` array of ``uint8`` (0..255) or of finite ``float32``/``float64``
values on the same scale, at least ``MIN_SIDE`` pixels on each side. Anything else, and an ``fps``
that is not a finite positive number, raises :class:`~auralink.errors.LocalProtocolError`: a bad
frame is a bug in the caller's capture path, not a network event.

This module is a pure core: no clock, no I/O, no randomness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from auralink.errors import LocalProtocolError

__all__ = [
    "ANALYSIS_HEIGHT",
    "ANALYSIS_WIDTH",
    "MIN_SIDE",
    "SCENE_CHANGE_FLOOR",
    "SCENE_CHANGE_RATIO",
    "SCENE_CHANGE_TI",
    "FeatureExtractor",
    "FrameStats",
    "analysis_stride",
    "extract_features",
]

ANALYSIS_WIDTH = 160
"""Target width of the analysis grid; the default stride brings frames down to about this size."""
ANALYSIS_HEIGHT = 120
"""Target height of the analysis grid."""
MIN_SIDE = 3
"""Smallest luma plane side, in pixels, that a 3x3 Sobel kernel can measure."""
SCENE_CHANGE_TI = 45.0
"""TI at or above which a frame is always a cut (unrelated pictures differ by about this much)."""
SCENE_CHANGE_FLOOR = 20.0
"""TI below which :class:`FeatureExtractor` never reports a cut, however still the history was."""
SCENE_CHANGE_RATIO = 4.0
"""How many times its recent average TI must jump for :class:`FeatureExtractor` to report a cut."""
_TI_HISTORY_WEIGHT = 0.2
"""Weight of the newest frame in :class:`FeatureExtractor`'s moving average of TI."""
_SOBEL_GAIN = 8.0
"""The unnormalised Sobel kernel answers 8 to a ramp that rises by 1 per pixel."""

FloatGrid = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class FrameStats:
    """What the hint engine knows about one video frame."""

    width: int
    """Width of the full-resolution frame, in pixels."""
    height: int
    """Height of the full-resolution frame, in pixels."""
    fps: float
    """Capture frame rate, in frames per second."""
    spatial_information: float
    """P.910 SI: standard deviation of the Sobel gradient magnitude of the luma (0 for a flat frame)."""
    temporal_information: float
    """P.910 TI: standard deviation of the luma difference from the previous frame (0 for the first)."""
    motion: float = 0.0
    """Rough global motion estimate, in full-resolution pixels per frame."""
    scene_change: bool = False
    """Whether this frame starts a new scene (a cut), so the previous one predicts it badly."""

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise LocalProtocolError(f"FrameStats.{name} must be a positive int, not {value!r}")
        _check_positive(self.fps, "FrameStats.fps")
        for name in ("spatial_information", "temporal_information", "motion"):
            _check_non_negative(getattr(self, name), f"FrameStats.{name}")


def _check_positive(value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise LocalProtocolError(f"{what} must be a finite number above 0, not {value!r}")


def _check_non_negative(value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise LocalProtocolError(f"{what} must be a finite number of at least 0, not {value!r}")


def analysis_stride(width: int, height: int) -> int:
    """The default block size: the largest that keeps the analysis grid at least 160x120 (at least 1)."""
    return max(1, min(width // ANALYSIS_WIDTH, height // ANALYSIS_HEIGHT))


def _check_luma(luma: object, what: str) -> npt.NDArray[np.generic]:
    if not isinstance(luma, np.ndarray):
        raise LocalProtocolError(f"{what} must be a numpy array, not {type(luma).__name__}")
    if luma.ndim != 2:
        raise LocalProtocolError(
            f"{what} must be a 2-D luma plane (height, width), not an array of shape {luma.shape}; "
            "pass only the Y plane"
        )
    height, width = luma.shape
    if height < MIN_SIDE or width < MIN_SIDE:
        raise LocalProtocolError(f"{what} is {width}x{height}; a frame needs at least {MIN_SIDE} pixels on each side")
    if luma.dtype == np.uint8:
        return luma
    if luma.dtype in (np.float32, np.float64):
        if not bool(np.isfinite(luma).all()):
            raise LocalProtocolError(f"{what} contains NaN or infinite values")
        return luma
    raise LocalProtocolError(f"{what} has dtype {luma.dtype}; use uint8, or float32/float64 on the 0..255 scale")


def _downscale(luma: npt.NDArray[np.generic], stride: int) -> FloatGrid:
    """Average ``stride x stride`` blocks (the ragged right and bottom edges are dropped)."""
    if stride == 1:
        return luma.astype(np.float32)
    height, width = luma.shape
    rows, cols = height // stride, width // stride
    cropped = luma[: rows * stride, : cols * stride]
    # Sum rows then columns with strided views: ten times faster than reshape().mean() here.
    accumulator = np.uint16 if cropped.dtype == np.uint8 and stride <= 257 else np.float32
    summed: npt.NDArray[np.uint16 | np.float32] = cropped[0::stride].astype(accumulator)
    for offset in range(1, stride):
        np.add(summed, cropped[offset::stride], out=summed)
    grid: FloatGrid = summed[:, 0::stride].astype(np.float32)
    for offset in range(1, stride):
        np.add(grid, summed[:, offset::stride], out=grid)
    grid *= np.float32(1.0 / (stride * stride))
    return grid


def _sobel(grid: FloatGrid) -> tuple[FloatGrid, FloatGrid]:
    """Unnormalised Sobel responses on the interior pixels (shape shrinks by 2 on each axis)."""
    smooth_rows = grid[:-2] + 2 * grid[1:-1] + grid[2:]  # [1, 2, 1] down the columns
    gx = smooth_rows[:, 2:] - smooth_rows[:, :-2]
    smooth_cols = grid[:, :-2] + 2 * grid[:, 1:-1] + grid[:, 2:]  # [1, 2, 1] along the rows
    gy = smooth_cols[2:] - smooth_cols[:-2]
    return gx, gy


def _measure(
    grid: FloatGrid, previous: FloatGrid | None, stride: int
) -> tuple[float, float, float]:  # (SI, TI, motion) in full-resolution units
    gx, gy = _sobel(grid)
    squared = gx * gx + gy * gy
    spatial = float(np.sqrt(squared).std()) / stride
    if previous is None:
        return spatial, 0.0, 0.0
    difference = grid - previous
    temporal = float(difference.std())
    gradient_energy = float(squared.mean()) / (_SOBEL_GAIN * _SOBEL_GAIN)
    if gradient_energy <= 1e-6:
        return spatial, temporal, 0.0
    interior = difference[1:-1, 1:-1]
    change_energy = float(np.mean(interior * interior))
    motion = math.sqrt(2.0 * change_energy / gradient_energy) * stride
    return spatial, temporal, motion


def _resolve_stride(stride: int | None, width: int, height: int) -> int:
    if stride is None:
        return analysis_stride(width, height)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise LocalProtocolError(f"stride must be a positive int, not {stride!r}")
    if width // stride < MIN_SIDE or height // stride < MIN_SIDE:
        raise LocalProtocolError(f"stride {stride} leaves fewer than {MIN_SIDE} pixels of a {width}x{height} frame")
    return stride


def extract_features(
    luma: npt.NDArray[np.generic],
    previous: npt.NDArray[np.generic] | None,
    fps: float,
    *,
    stride: int | None = None,
) -> FrameStats:
    """Measure one frame against the previous one (or None for the first frame) without keeping state.

    A cut is flagged only when TI reaches :data:`SCENE_CHANGE_TI`; use :class:`FeatureExtractor` on
    a stream to also judge TI against its history, and to downscale each frame only once.
    """
    _check_positive(fps, "fps")
    frame = _check_luma(luma, "luma")
    height, width = frame.shape
    step = _resolve_stride(stride, width, height)
    previous_grid = None
    if previous is not None:
        before = _check_luma(previous, "previous")
        if before.shape != frame.shape:
            raise LocalProtocolError(f"previous frame has shape {before.shape}, but this frame has {frame.shape}")
        previous_grid = _downscale(before, step)
    spatial, temporal, motion = _measure(_downscale(frame, step), previous_grid, step)
    return FrameStats(
        width=width,
        height=height,
        fps=float(fps),
        spatial_information=spatial,
        temporal_information=temporal,
        motion=motion,
        scene_change=temporal >= SCENE_CHANGE_TI,
    )


class FeatureExtractor:
    """Measures a stream of frames, keeping the previous analysis grid and a moving average of TI.

    A frame is a cut when its TI reaches :data:`SCENE_CHANGE_TI`, or when it is at least
    :data:`SCENE_CHANGE_FLOOR` and :data:`SCENE_CHANGE_RATIO` times the recent average. A change of
    frame size restarts the stream (the next frame has no previous one).
    """

    __slots__ = ("_average_ti", "_previous", "_shape", "_stride")

    def __init__(self, *, stride: int | None = None) -> None:
        if stride is not None:
            _resolve_stride(stride, stride * MIN_SIDE, stride * MIN_SIDE)
        self._stride = stride
        self._previous: FloatGrid | None = None
        self._shape: tuple[int, ...] | None = None
        self._average_ti: float | None = None

    def reset(self) -> None:
        """Forget the previous frame and the TI history (after a pause, or a source switch)."""
        self._previous = None
        self._shape = None
        self._average_ti = None

    def push(self, luma: npt.NDArray[np.generic], fps: float) -> FrameStats:
        """Measure the next frame of the stream."""
        _check_positive(fps, "fps")
        frame = _check_luma(luma, "luma")
        height, width = frame.shape
        step = _resolve_stride(self._stride, width, height)
        if frame.shape != self._shape:
            self.reset()
            self._shape = frame.shape
        grid = _downscale(frame, step)
        spatial, temporal, motion = _measure(grid, self._previous, step)
        cut = temporal >= SCENE_CHANGE_TI
        if self._previous is not None:
            average = self._average_ti
            if average is not None and temporal >= SCENE_CHANGE_FLOOR and temporal >= SCENE_CHANGE_RATIO * average:
                cut = True
            if cut:
                self._average_ti = None  # a new scene starts a new history
            elif average is None:
                self._average_ti = temporal
            else:
                self._average_ti = average + _TI_HISTORY_WEIGHT * (temporal - average)
        self._previous = grid
        return FrameStats(
            width=width,
            height=height,
            fps=float(fps),
            spatial_information=spatial,
            temporal_information=temporal,
            motion=motion,
            scene_change=cut,
        )
