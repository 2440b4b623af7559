"""When a change of encoder settings pays for its keyframe: a pure core fed with the encoder's own output.

Theory of operation
===================

aiortc re-creates its VP8 encoder on every bitrate change of more than 10% and on every change of
frame size, and PyAV cannot retarget an open libvpx context, so each change AIC makes costs one
forced keyframe. In CBR the rate controller pays a keyframe's excess back out of the frames that
follow it: over the next ``horizon`` seconds the inter frames get ``R * horizon - K`` bits instead of
``R * horizon``, where ``K`` is the keyframe's size minus the per-frame budget ``R / fps`` it was
coded under. A change that is not forced by the network is therefore made only when:

* **it pays for its keyframe in bits.** For a decrease, the bits saved over the horizon,
  ``(R_now - R_new) * horizon``, exceed ``K``; for an increase, the bits bought,
  ``(R_new - R_now) * horizon``, exceed ``K`` (otherwise the inter frames after the switch get no more
  bits than they had, and quality drops while the keyframe is paid for);
* **it is beyond the model's own uncertainty.** The rate model's predicted quality at the wanted
  settings (for an increase: at the rate left once the keyframe is paid, ``R_new - K / horizon``) and
  at the settings in force differ by more than ``quality_tolerance`` (for an increase, the wanted
  settings must be the better ones by that much). The default, 3 VMAF points, is
  the band in which the shipped model's confidence is measured (44% of held-out predictions within
  it); it is narrower than the model's cross-validated RMSE (6.4), which is mostly a per-source bias
  that cancels when two predictions for the same content are compared.

``K`` comes from what the encoder actually produced (:class:`KeyframeCost`): the size of the latest
keyframe less the per-frame budget of the target it was coded at. Until a keyframe has been seen,
``K`` is unknown and only the uncertainty rule applies. Network-driven decreases (the settings in
force no longer fit the path's estimate) and deadline fallbacks never go through this rule: the
adapter applies them at once.

Everything here is pure: no clock, no I/O; the adapter passes sizes, targets and frame rates in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from auralink.errors import LocalProtocolError

__all__ = ["DEFAULT_SWITCH_POLICY", "KeyframeCost", "SwitchPolicy", "pays_for_keyframe"]


@dataclass(frozen=True, slots=True)
class SwitchPolicy:
    """How a controller weighs a change of settings against the keyframe it forces."""

    horizon: float | None = None
    """Seconds over which a change must pay back its keyframe; None means the controller's dwell."""
    quality_tolerance: float = 3.0
    """Predicted quality differences up to this are within the model's uncertainty (VMAF points)."""

    def __post_init__(self) -> None:
        if self.horizon is not None and not 0.0 < self.horizon < math.inf:
            raise LocalProtocolError(f"switch horizon must be a finite number of seconds > 0, not {self.horizon!r}")
        if not 0.0 <= self.quality_tolerance < math.inf:
            raise LocalProtocolError(f"quality_tolerance must be finite and >= 0, not {self.quality_tolerance!r}")


DEFAULT_SWITCH_POLICY = SwitchPolicy()
"""The policy an :class:`~auralink.aic.controller.AICController` uses unless told otherwise."""


class KeyframeCost:
    """The extra bits of the latest keyframe, measured from the encoder's output; see the module docstring."""

    __slots__ = ("_extra_bits", "keyframes")

    def __init__(self) -> None:
        self._extra_bits: float | None = None
        self.keyframes = 0
        """Keyframes observed."""

    def observe(self, payload_bytes: int, *, keyframe: bool, target_bps: float, fps: float) -> None:
        """One coded frame: its size, whether it was a keyframe, and the target and frame rate it was coded at."""
        rates_ok = math.isfinite(target_bps) and target_bps > 0 and math.isfinite(fps) and fps > 0
        if payload_bytes < 0 or not rates_ok:
            raise LocalProtocolError(
                f"frame size, target and fps must be >= 0, > 0 and > 0, not {payload_bytes}, {target_bps}, {fps}"
            )
        if keyframe:
            self.keyframes += 1
            self._extra_bits = max(0.0, payload_bytes * 8.0 - target_bps / fps)

    @property
    def extra_bits(self) -> float | None:
        """Bits the latest keyframe cost beyond its frame's share of the target, or None before any."""
        return self._extra_bits


def pays_for_keyframe(
    *,
    current_bps: float,
    wanted_bps: float,
    horizon: float,
    keyframe_bits: float | None,
    current_quality: float,
    wanted_quality: float,
    quality_tolerance: float,
) -> bool:
    """Whether a change from ``current_bps`` to ``wanted_bps`` is worth one keyframe; see the module docstring.

    ``current_quality`` is the model's prediction for the settings in force; ``wanted_quality`` its
    prediction for the wanted settings, for an increase at the rate left once the keyframe is paid
    (``wanted_bps - keyframe_bits / horizon``).
    """
    if not 0.0 < horizon < math.inf:
        raise LocalProtocolError(f"horizon must be a finite number of seconds > 0, not {horizon!r}")
    cost = 0.0 if keyframe_bits is None else keyframe_bits
    if abs(wanted_bps - current_bps) * horizon <= cost:
        return False
    if wanted_bps > current_bps:  # bits bought must buy quality, beyond the model's uncertainty
        return wanted_quality - current_quality > quality_tolerance
    return abs(wanted_quality - current_quality) > quality_tolerance
