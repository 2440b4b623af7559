"""The aiortc adapter of AIC: hints drive a live video sender's VP8 encoder and its track.

Theory of operation
===================

aiortc 1.16 has no public bitrate API, so this module works through three seams, each checked by a
test against the real classes:

* **The encoder** is the private ``sender._RTCRtpSender__encoder``. aiortc creates it lazily, right
  after the track's ``recv()`` returns the first frame, so the controller adopts it on the next
  frame. Until then (and for any encoder that is not a ``Vp8Encoder``) aiortc's native behaviour
  stays in force.
* **Limits per encoder.** ``Vp8Encoder.target_bitrate`` clamps to the module globals
  ``MIN_BITRATE``/``MAX_BITRATE`` (250 kbps to 1.5 Mbps). Changing those globals would change every
  call in the process, so instead the adopted encoder's class is switched to
  :class:`ControlledVp8Encoder`, a subclass whose own limits (``floor``/``ceiling``) apply to that
  one instance. Its ``target_bitrate`` setter is what aiortc's REMB handler calls: the subclass
  records the receiver's estimate (:attr:`ControlledVp8Encoder.remb_bps`) instead of applying it,
  and the controller uses it as the network's bandwidth estimate, which no target ever exceeds.
* **Encoder options per encoder.** aiortc turns on libvpx's denoiser (``noise-sensitivity=4``),
  which caps quality: with only the denoiser off, the same VMAF costs 72-87% fewer bits (see
  ``docs/benchmarks.md``). ``Vp8Encoder`` builds its libvpx context inside ``encode()`` and sets its
  options before the first frame opens it; :class:`ControlledVp8Encoder` declares ``codec`` as a
  property, so every context aiortc creates for that one encoder is wrapped in
  :class:`TunedCodecContext`, which merges :data:`TUNED_VP8_OPTIONS` (or the caller's overrides)
  into the options aiortc sets. Other encoders in the process keep aiortc's options. The same
  merge starts libvpx's rate control with a full one-second buffer (``rc_init_occupancy``): by
  default VP8 codes its first keyframe, and every keyframe of a re-created encoder, at its worst
  quantizer and climbs back over about a second.
* **Encoder effort.** :class:`ControlledVp8Encoder` times each ``encode`` call (aiortc runs it in an
  executor thread); on the next frame the controller hands those times to an
  :class:`~auralink.aic.effort.EffortGovernor`, whose chosen libvpx ``cpu-used`` becomes one of the
  per-encoder options (a change re-creates the encoder: one keyframe). This spends spare CPU on
  compression; it knows nothing of the content or the network.
* **Resolution and frame rate** are applied in the track (:class:`AICVideoTrack`), since aiortc
  has no ``scaleResolutionDownBy``: frames are dropped to the hinted rate and scaled with
  ``VideoFrame.reformat``. Every frame's ``pict_type`` is reset, so frames decoded from files or
  FFmpeg sources, which arrive marked as keyframes, are not all coded as keyframes.

Hysteresis and scenes. aiortc re-creates the encoder, and so forces a keyframe, whenever the target
moves by more than 10% from the coded bitrate or the frame size changes (libvpx as built into PyAV
ignores a bitrate change on an open context, so there is no cheaper way). Per-frame hints would
therefore buy keyframes, not quality. The controller:

* smooths the content features over about a third of a second (an exponential average of SI and
  TI) and restarts the average at each scene cut, so one noisy frame does not move the target;
* changes bitrate or size at once when the current bitrate no longer fits the network's estimate,
  or on a deadline fallback; otherwise at a scene cut or at most once per ``dwell`` seconds of media
  time (2 s by default), and then only if the change pays for its keyframe: the bits it moves over
  the horizon exceed the latest keyframe's measured extra bits, and the model's predicted quality
  moves by more than its uncertainty (:mod:`auralink.aic.switching`; ``switching=None`` turns this
  off). :class:`ControlledVp8Encoder` records each coded frame's size for that estimate;
* writes a new target only when it moves by more than ``hysteresis`` from the encoder's current
  one. Each write that re-creates the encoder is counted in :attr:`AICMetrics.bitrate_changes`.

Deadline. Each hint goes through :meth:`HintEngine.apply_or_native` at the moment it is applied: a
hint older than its deadline (50 ms by default, as when feature extraction stalls or a remote hint
arrives late) is dropped, aiortc's native settings apply (the last REMB, or aiortc's 500 kbps start,
clamped to aiortc's limits and, as always, to the network's estimate; full size and rate), and
:attr:`AICMetrics.fallbacks` counts it.

This is an adapter, not a core: it takes a ``clock`` (monotonic seconds, injectable for tests) and
runs inside aiortc's sender task, on the event loop. The per-frame work is feature extraction
(about a millisecond at 640x480) and a hint.
"""

from __future__ import annotations

import logging
import string
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import cast

import numpy as np
import numpy.typing as npt

from auralink.aic.effort import DEFAULT_EFFORT, EffortGovernor, EffortPolicy
from auralink.aic.engine import DEFAULT_HYSTERESIS, EncoderSettings, Hint, HintEngine, NetworkStats
from auralink.aic.errors import UnsupportedEncoder
from auralink.aic.features import FeatureExtractor, FrameStats
from auralink.aic.rtp import HintMark, MarkingExtensionsMap, attach_sender
from auralink.aic.switching import DEFAULT_SWITCH_POLICY, KeyframeCost, SwitchPolicy, pays_for_keyframe
from auralink.errors import LocalProtocolError

try:
    from aiortc.codecs import vpx
    from aiortc.mediastreams import MediaStreamTrack
    from av import VideoFrame
    from av.frame import Frame
    from av.video.codeccontext import VideoCodecContext
    from av.video.frame import PictureType
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("auralink.aic.controller needs aiortc; install it with: pip install 'auralink[calls]'") from exc

__all__ = [
    "AIORTC_VP8_OPTIONS",
    "DEFAULT_DWELL",
    "TUNED_VP8_OPTIONS",
    "AICController",
    "AICMetrics",
    "AICVideoTrack",
    "ControlledVp8Encoder",
    "TunedCodecContext",
    "adopt_encoder",
    "set_encoder_bitrate",
]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_TARGET_ATTRIBUTE = "_Vp8Encoder__target_bitrate"
"""Where ``Vp8Encoder`` keeps its target (its ``__target_bitrate``, name-mangled)."""
_ENCODER_ATTRIBUTE = "_RTCRtpSender__encoder"
"""Where ``RTCRtpSender`` keeps its encoder (its ``__encoder``, name-mangled)."""
DEFAULT_FLOOR_BPS = 30_000
"""Lowest target the controller writes to an adopted encoder."""
DEFAULT_CEILING_BPS = 4_000_000
"""Highest target the controller writes to an adopted encoder."""
TUNED_VP8_OPTIONS: Mapping[str, str] = MappingProxyType({"noise-sensitivity": "0", "rc_init_occupancy": "{bufsize}"})
"""libvpx options an adopted encoder overrides: the denoiser off (aiortc sets 4), and rate control
starting with a full buffer (libvpx's default starts VP8's first keyframe at its worst quantizer).

A value may name one of aiortc's own options in braces (``{bufsize}``, its one-second buffer in
bits): it is replaced by aiortc's value for each codec context."""
AIORTC_VP8_OPTIONS = frozenset(
    {
        "bufsize",
        "cpu-used",
        "deadline",
        "lag-in-frames",
        "minrate",
        "maxrate",
        "noise-sensitivity",
        "overshoot-pct",
        "partitions",
        "static-thresh",
        "undershoot-pct",
    }
)
"""The options aiortc 1.16's ``Vp8Encoder`` sets, which an override value may name in braces."""
DEFAULT_DWELL = 2.0
"""Seconds of media between two bitrate or size changes, unless a cut or the network forces one."""
_SMOOTHING = 0.1
"""Weight of the newest frame in the controller's moving average of SI and TI."""
_ENCODES_KEPT = 64
"""Encode times an adopted encoder keeps until the controller reads them."""
_GUESSED_FPS = 30.0
"""Source frame rate assumed until the first frame interval is measured (no ``source_fps`` given)."""
_MAX_FPS = 240.0
"""Highest source frame rate the controller believes."""


class TunedCodecContext:
    """A libvpx ``CodecContext`` whose ``options``, when aiortc sets them, get overrides merged in.

    Every other attribute reads and writes through to the context, so aiortc's code works on it
    unchanged.
    """

    __slots__ = ("_context", "_overrides")

    def __init__(self, context: object, overrides: Mapping[str, str]) -> None:
        object.__setattr__(self, "_context", context)
        object.__setattr__(self, "_overrides", dict(overrides))

    @property
    def context(self) -> object:
        """The wrapped PyAV codec context."""
        return object.__getattribute__(self, "_context")

    def __getattr__(self, name: str) -> object:
        return getattr(object.__getattribute__(self, "_context"), name)

    def __setattr__(self, name: str, value: object) -> None:
        if name == "options" and isinstance(value, dict):
            value = _merged(value, object.__getattribute__(self, "_overrides"))
        setattr(object.__getattribute__(self, "_context"), name, value)


def _merged(aiortc_options: dict[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """aiortc's options with the overrides on top; an override naming an option aiortc did not set is left out."""
    merged = dict(aiortc_options)
    for key, text in overrides.items():
        try:
            merged[key] = text.format_map(aiortc_options)
        except KeyError:
            logger.debug("encoder option %s=%r left out: aiortc set no such option", key, text)
    return merged


def set_encoder_bitrate(encoder: vpx.Vp8Encoder, bitrate_bps: int, *, floor: int, ceiling: int) -> int:
    """Set one ``Vp8Encoder``'s target within ``[floor, ceiling]``, bypassing aiortc's global clamp.

    Returns the target written. Only this instance is affected; aiortc's ``MIN_BITRATE`` and
    ``MAX_BITRATE`` are left alone. The encoder applies it (re-creating its codec) on the next frame
    if it differs from the coded bitrate by more than 10%.
    """
    if not isinstance(encoder, vpx.Vp8Encoder):
        raise UnsupportedEncoder(type(encoder).__name__)
    if not 0 < floor <= ceiling:
        raise LocalProtocolError(f"encoder limits must satisfy 0 < floor <= ceiling, not {floor}, {ceiling}")
    target = int(min(max(int(bitrate_bps), floor), ceiling))
    setattr(encoder, _TARGET_ATTRIBUTE, target)
    return target


class ControlledVp8Encoder(vpx.Vp8Encoder):
    """aiortc's ``Vp8Encoder`` with limits of its own, whose REMB writes are recorded rather than applied.

    Instances are made by :func:`adopt_encoder`, which switches a live encoder's class, so the codec
    context and picture id it already has are kept.
    """

    floor: int
    """Lowest target this encoder accepts, bits per second."""
    ceiling: int
    """Highest target this encoder accepts, bits per second."""
    remb_bps: int | None
    """The receiver's latest REMB estimate, unclamped, or None before the first."""
    options: dict[str, str]
    """libvpx options merged over aiortc's into each codec context this encoder creates."""
    timer: Callable[[], float]
    """Monotonic seconds, read around each ``encode`` to time it."""
    encodes: deque[tuple[float, bool]]
    """Recent encodes not yet read: (seconds taken, whether it opened a codec context)."""
    coded: deque[tuple[int, bool, int]]
    """Recent coded frames not yet read: (payload bytes, whether a keyframe, target bits per second)."""

    def encode(self, frame: Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        """aiortc's ``encode``, timed; the time is appended to :attr:`encodes`, the frame's size to :attr:`coded`."""
        before = self.__dict__.get("codec")
        target = self.target_bitrate
        started = self.timer()
        out = super().encode(frame, force_keyframe)
        self.encodes.append((self.timer() - started, self.__dict__.get("codec") is not before))
        payloads = out[0]
        if payloads:
            self.coded.append((sum(len(p) for p in payloads), _is_keyframe(payloads[0]), target))
        return out

    @property
    def codec(self) -> VideoCodecContext | None:
        """The libvpx context, or None; a :class:`TunedCodecContext` (which acts as one) when there are overrides."""
        return cast("VideoCodecContext | None", self.__dict__.get("codec"))

    @codec.setter
    def codec(self, context: object | None) -> None:
        # aiortc assigns a fresh context, then sets its options, then opens it on the first frame.
        if context is not None and self.options and not isinstance(context, TunedCodecContext):
            context = TunedCodecContext(context, self.options)
        self.__dict__["codec"] = context

    @property
    def target_bitrate(self) -> int:
        """Target bitrate in bits per second (what the next frame is coded at)."""
        value: int = getattr(self, _TARGET_ATTRIBUTE)
        return value

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        # aiortc's RTCRtpSender calls this with each REMB; AIC owns the target, so only record it.
        self.remb_bps = int(bitrate)

    def set_target(self, bitrate_bps: int) -> int:
        """Set the target within this encoder's own limits; returns the value written."""
        return set_encoder_bitrate(self, bitrate_bps, floor=self.floor, ceiling=self.ceiling)


def adopt_encoder(
    encoder: object,
    *,
    floor: int = DEFAULT_FLOOR_BPS,
    ceiling: int = DEFAULT_CEILING_BPS,
    options: Mapping[str, str] = TUNED_VP8_OPTIONS,
    timer: Callable[[], float] | None = None,
) -> ControlledVp8Encoder:
    """Put a live ``Vp8Encoder`` under AIC control, with per-encoder limits and libvpx options; idempotent.

    ``options`` are merged over aiortc's own in every codec context the encoder creates from now on
    (an empty mapping keeps aiortc's); a value may name one of aiortc's options in braces
    (:data:`TUNED_VP8_OPTIONS`). A context already open with other options is dropped, so the
    next frame re-creates it (one keyframe). Each ``encode`` is timed with ``timer``
    (``time.perf_counter`` unless given; None keeps the one already in use). Raises
    :class:`UnsupportedEncoder` for any other encoder (H.264, Opus, a subclass of unknown behaviour).
    """
    if not 0 < floor <= ceiling:
        raise LocalProtocolError(f"encoder limits must satisfy 0 < floor <= ceiling, not {floor}, {ceiling}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in options.items()):
        raise LocalProtocolError(f"encoder options must map str to str, not {dict(options)!r}")
    for key, value in options.items():
        try:
            named = {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
        except ValueError as exc:
            raise LocalProtocolError(f"encoder option {key}={value!r}: {exc}") from exc
        if not named <= AIORTC_VP8_OPTIONS:
            raise LocalProtocolError(
                f"encoder option {key}={value!r} names {sorted(named - AIORTC_VP8_OPTIONS)} in braces; "
                f"only aiortc's own options can be named: {sorted(AIORTC_VP8_OPTIONS)}"
            )
    if type(encoder) is vpx.Vp8Encoder:
        current = encoder.codec
        encoder.__class__ = ControlledVp8Encoder
        assert isinstance(encoder, ControlledVp8Encoder)
        encoder.remb_bps = None
        encoder.options = {}
        encoder.timer = time.perf_counter
        encoder.encodes = deque(maxlen=_ENCODES_KEPT)
        encoder.coded = deque(maxlen=_ENCODES_KEPT)
        encoder.__dict__["codec"] = current
    elif not isinstance(encoder, ControlledVp8Encoder):
        raise UnsupportedEncoder(type(encoder).__name__)
    encoder.floor, encoder.ceiling = floor, ceiling
    if timer is not None:
        encoder.timer = timer
    if dict(options) != encoder.options:
        encoder.options = dict(options)
        encoder.codec = None  # re-created with the new options on the next frame
    return encoder


@dataclass(frozen=True, slots=True)
class AICMetrics:
    """A snapshot of what an :class:`AICController` did."""

    frames_in: int
    """Frames read from the source track."""
    frames_sent: int
    """Frames passed on to the encoder."""
    frames_dropped: int
    """Frames dropped to meet the hinted frame rate."""
    hints: int
    """Hints made."""
    fallbacks: int
    """Hints dropped as stale, so that native settings applied instead."""
    bitrate_changes: int
    """Targets written to the encoder (each re-creates it and forces a keyframe)."""
    unsupported_encoder: bool
    """Whether the sender's encoder could not be driven (its bitrate then stays aiortc's)."""
    target_bitrate_bps: int | None
    """The encoder's current target, or None before it exists."""
    remb_bps: int | None
    """The receiver's latest REMB estimate, or None before the first."""
    last_hint: Hint | None
    """The latest hint."""
    cpu_used: int | None = None
    """libvpx ``cpu-used`` the encoder codes with, or None before it exists or without an effort policy."""
    effort_changes: int = 0
    """Changes of ``cpu-used`` (each re-creates the encoder and forces a keyframe)."""
    encoder_late: int = 0
    """Times the encoder ran late and effort went back to the fastest level."""
    switches_declined: int = 0
    """Changes held back because they would not pay for their keyframe (a run of frames counts once)."""
    keyframe_bits: float | None = None
    """Bits the latest keyframe cost beyond its frame's share of the target, or None before any."""


class AICController:
    """Drives one aiortc video sender from a :class:`HintEngine`; see the module docstring.

    Use::

        controller = AICController(HintEngine(Mode.ADAPTIVE))
        sender = pc.addTrack(controller.wrap(camera_track))
        controller.attach(sender)

    Feed RTT, loss and jitter with :meth:`update_network` when they are known (for example from
    ``sender.getStats()``); the bandwidth used is the lower of that estimate and the receiver's REMB.
    Until a bandwidth estimate is given (``network=`` or :meth:`update_network`), the receiver's
    REMB is the estimate, and before the first REMB, aiortc's own 500 kbps start.

    Pass ``source_fps`` when the source's nominal frame rate is known (the camera's setting, a
    file's rate): the first frame's bitrate is then chosen for the right rate. Without it the
    controller assumes 30 fps for the first frame and then measures the rate from the frames'
    timestamps.
    """

    def __init__(
        self,
        engine: HintEngine | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        network: NetworkStats | None = None,
        floor_bps: int = DEFAULT_FLOOR_BPS,
        ceiling_bps: int = DEFAULT_CEILING_BPS,
        hysteresis: float = DEFAULT_HYSTERESIS,
        dwell: float = DEFAULT_DWELL,
        encoder_options: Mapping[str, str] = TUNED_VP8_OPTIONS,
        effort: EffortPolicy | None = DEFAULT_EFFORT,
        encode_timer: Callable[[], float] = time.perf_counter,
        switching: SwitchPolicy | None = DEFAULT_SWITCH_POLICY,
        source_fps: float | None = None,
    ) -> None:
        if source_fps is not None and not 0.0 < source_fps <= _MAX_FPS:
            raise LocalProtocolError(f"source_fps must lie in (0, {_MAX_FPS:g}], not {source_fps!r}")
        if not 0 < floor_bps <= ceiling_bps:
            raise LocalProtocolError(f"floor_bps and ceiling_bps must satisfy 0 < floor <= ceiling: {floor_bps}")
        if not 0.0 <= hysteresis <= 1.0:
            raise LocalProtocolError(f"hysteresis must lie in [0, 1], not {hysteresis!r}")
        if not 0.0 <= dwell < float("inf"):
            raise LocalProtocolError(f"dwell must be a finite number of seconds >= 0, not {dwell!r}")
        self._dwell = dwell
        self._switching = switching
        self._keyframe_cost = KeyframeCost()
        self._declined = 0
        self._declining = False
        self._options = dict(encoder_options)
        self._governor = EffortGovernor(effort) if effort is not None else None
        self._encode_timer = encode_timer
        self._applied: EncoderSettings | None = None
        self._applied_at: float | None = None
        self._smoothed: tuple[float, float] | None = None
        self._marking: MarkingExtensionsMap | None = None
        self.engine = engine if engine is not None else HintEngine()
        """The hint engine; its ``mode`` may be changed at any time."""
        self._clock = clock
        # Before any REMB, assume what aiortc itself starts at.
        self._network = network or NetworkStats(rtt_s=0.05, loss=0.0, jitter_s=0.0, bandwidth_bps=vpx.DEFAULT_BITRATE)
        self._estimate_given = network is not None
        self._floor, self._ceiling, self._hysteresis = floor_bps, ceiling_bps, hysteresis
        self._sender: object | None = None
        self._encoder: ControlledVp8Encoder | None = None
        self._unsupported = False
        self._extractor = FeatureExtractor()
        self._frames_in = self._frames_sent = self._frames_dropped = 0
        self._hints = self._bitrate_changes = 0
        self._last_hint: Hint | None = None
        self._next_due: float | None = None
        self._last_time: float | None = None
        # The source's nominal rate when the application knows it (its camera's setting); else a
        # 30 fps guess that the first measured frame interval replaces.
        self._source_fps = source_fps if source_fps is not None else _GUESSED_FPS
        self._fps_measured = source_fps is not None

    # --- wiring -------------------------------------------------------------------------------------------

    def wrap(self, source: MediaStreamTrack) -> AICVideoTrack:
        """A track that reads ``source`` and sends it at the hinted size and rate."""
        return AICVideoTrack(source, self)

    def attach(self, sender: object, *, rtp_extension_id: int | None = None) -> None:
        """Drive the encoder of ``sender`` (an ``RTCRtpSender``) once aiortc has created it.

        With ``rtp_extension_id`` (agreed with the receiver in signalling), every RTP packet also
        carries the id and mode of the hint made for its frame (:mod:`auralink.aic.rtp`); no
        element is sent for frames coded under a deadline fallback.
        """
        self._sender = sender
        self._encoder = None
        self._unsupported = False
        self._marking = None
        if rtp_extension_id is not None:
            self._marking = attach_sender(sender, rtp_extension_id)

    def update_network(self, stats: NetworkStats) -> None:
        """The latest RTT, loss, jitter and bandwidth estimate of the path."""
        if not isinstance(stats, NetworkStats):
            raise LocalProtocolError(f"update_network takes NetworkStats, not {type(stats).__name__}")
        self._network = stats
        self._estimate_given = True

    def update_path(self, *, rtt_s: float, loss: float, jitter_s: float) -> None:
        """RTT, loss and jitter from RTCP (a sender's ``remote-inbound-rtp`` stats); the bandwidth is left alone.

        Unlike :meth:`update_network`, this gives no bandwidth estimate: the receiver's REMB (or
        the estimate last given to :meth:`update_network`) stays the budget.
        """
        bandwidth = self._network.bandwidth_bps
        self._network = NetworkStats(rtt_s=rtt_s, loss=loss, jitter_s=jitter_s, bandwidth_bps=bandwidth)

    @property
    def network(self) -> NetworkStats:
        """What the engine is told: the latest stats, with bandwidth capped by the receiver's REMB."""
        remb = self._encoder.remb_bps if self._encoder is not None else None
        if remb is None or (self._estimate_given and remb >= self._network.bandwidth_bps):
            return self._network
        n = self._network
        return NetworkStats(rtt_s=n.rtt_s, loss=n.loss, jitter_s=n.jitter_s, bandwidth_bps=float(remb))

    def metrics(self) -> AICMetrics:
        """A snapshot of the counters."""
        encoder = self._encoder
        return AICMetrics(
            frames_in=self._frames_in,
            frames_sent=self._frames_sent,
            frames_dropped=self._frames_dropped,
            hints=self._hints,
            fallbacks=self.engine.fallbacks,
            bitrate_changes=self._bitrate_changes,
            unsupported_encoder=self._unsupported,
            target_bitrate_bps=encoder.target_bitrate if encoder is not None else None,
            remb_bps=encoder.remb_bps if encoder is not None else None,
            last_hint=self._last_hint,
            cpu_used=self._governor.cpu_used if encoder is not None and self._governor is not None else None,
            effort_changes=self._governor.changes if self._governor is not None else 0,
            encoder_late=self._governor.late if self._governor is not None else 0,
            switches_declined=self._declined,
            keyframe_bits=self._keyframe_cost.extra_bits,
        )

    # --- per frame ----------------------------------------------------------------------------------------

    def process(self, frame: VideoFrame) -> VideoFrame | None:
        """Measure ``frame``, make and apply a hint; the frame to send, or None to drop it."""
        self._frames_in += 1
        seconds = self._frame_time(frame)
        luma = _luma(frame)
        stats = self._extractor.push(luma, self._source_fps)
        network = self.network
        smoothed = self._smooth(stats)
        hint = self.engine.hint(smoothed, network, self._clock())
        self._hints += 1
        self._last_hint = hint
        native = self._native()
        fallbacks = self.engine.fallbacks
        wanted = self.engine.apply_or_native(hint, self._clock(), native)
        fallback = self.engine.fallbacks != fallbacks
        if self._marking is not None:
            self._marking.mark = None if fallback else HintMark.of(hint)
        now = self._clock() if seconds is None else seconds
        self._observe_coded()
        settings = self._settle(wanted, network, now, smoothed, cut=stats.scene_change, fallback=fallback)
        self._apply_bitrate(settings.bitrate_bps, network)
        self._govern_effort(now, 1.0 / settings.fps)
        if not self._due(seconds, settings.fps):
            self._frames_dropped += 1
            return None
        out = frame
        if settings.resolution_scale < 1.0:
            width = max(2, round(frame.width * settings.resolution_scale / 2) * 2)
            height = max(2, round(frame.height * settings.resolution_scale / 2) * 2)
            out = frame.reformat(width=width, height=height)
            out.pts, out.time_base = frame.pts, frame.time_base
        out.pict_type = PictureType.NONE
        self._frames_sent += 1
        return out

    def _smooth(self, stats: FrameStats) -> FrameStats:
        """SI and TI averaged over recent frames; the average restarts at a cut."""
        si, ti = stats.spatial_information, stats.temporal_information
        if self._smoothed is not None and not stats.scene_change:
            old_si, old_ti = self._smoothed
            si = old_si + _SMOOTHING * (si - old_si)
            ti = old_ti + _SMOOTHING * (ti - old_ti)
        self._smoothed = (si, ti)
        return FrameStats(
            width=stats.width,
            height=stats.height,
            fps=stats.fps,
            spatial_information=si,
            temporal_information=ti,
            motion=stats.motion,
            scene_change=stats.scene_change,
        )

    def _settle(
        self,
        wanted: EncoderSettings,
        network: NetworkStats,
        now: float,
        stats: FrameStats,
        *,
        cut: bool,
        fallback: bool,
    ) -> EncoderSettings:
        """The settings to use now: ``wanted`` if a change is due and pays for its keyframe, else the ones in force.

        The first settings, deadline fallbacks and settings that no longer fit the network apply at
        once; a cut lifts the dwell; any other change that re-creates the encoder must pay for its
        keyframe (:mod:`auralink.aic.switching`).
        """
        applied = self._applied
        if applied is None or fallback or applied.bitrate_bps > max(self._floor, network.bandwidth_bps):
            return self._adopt(wanted, now)
        due = (
            cut
            or self._applied_at is None
            or now - self._applied_at >= self._dwell
            or now < self._applied_at  # the media clock went back (a new source)
        )
        if not due or wanted == applied:
            return applied
        if self._recreates(applied, wanted) and not self._pays(applied, wanted, stats):
            if not self._declining:  # a run of frames holding the same change back counts once
                self._declined += 1
                self._declining = True
            return applied
        return self._adopt(wanted, now)

    def _adopt(self, wanted: EncoderSettings, now: float) -> EncoderSettings:
        self._declining = False
        if self._applied is None or wanted != self._applied:
            self._applied, self._applied_at = wanted, now
        return wanted

    def _recreates(self, applied: EncoderSettings, wanted: EncoderSettings) -> bool:
        """Whether moving from ``applied`` to ``wanted`` makes aiortc re-create the encoder (a keyframe)."""
        moved = abs(wanted.bitrate_bps - applied.bitrate_bps) > self._hysteresis * applied.bitrate_bps
        return moved or wanted.resolution_scale != applied.resolution_scale

    def _pays(self, applied: EncoderSettings, wanted: EncoderSettings, stats: FrameStats) -> bool:
        """Whether the change is worth its keyframe: bits over the horizon, and beyond the model's uncertainty."""
        policy = self._switching
        if policy is None:
            return True
        horizon = policy.horizon if policy.horizon is not None else (self._dwell or DEFAULT_DWELL)
        keyframe = self._keyframe_cost.extra_bits
        effective = float(wanted.bitrate_bps)
        if wanted.bitrate_bps > applied.bitrate_bps and keyframe is not None:  # the keyframe is paid out of the rise
            effective = max(1.0, wanted.bitrate_bps - keyframe / horizon)
        model = self.engine.model

        def rate(settings: EncoderSettings) -> float:  # full rate is the frame's rate, whatever its rounding
            return stats.fps if settings.fps >= stats.fps * 0.999 else settings.fps

        return pays_for_keyframe(
            current_bps=applied.bitrate_bps,
            wanted_bps=wanted.bitrate_bps,
            horizon=horizon,
            keyframe_bits=keyframe,
            current_quality=model.predicted_quality(
                stats, applied.bitrate_bps, applied.resolution_scale, rate(applied)
            ),
            wanted_quality=model.predicted_quality(stats, effective, wanted.resolution_scale, rate(wanted)),
            quality_tolerance=policy.quality_tolerance,
        )

    def _observe_coded(self) -> None:
        """Feed the sizes of the frames coded since the last call to the keyframe-cost estimate."""
        encoder = self._encoder
        if encoder is None:
            return
        fps = self._applied.fps if self._applied is not None else self._source_fps
        while encoder.coded:
            size, keyframe, target = encoder.coded.popleft()
            self._keyframe_cost.observe(size, keyframe=keyframe, target_bps=target, fps=fps)

    def _native(self) -> EncoderSettings:
        """What aiortc would do by itself: the last REMB (else its 500 kbps start) within its global limits."""
        remb = self._encoder.remb_bps if self._encoder is not None else None
        wanted = vpx.DEFAULT_BITRATE if remb is None else remb
        bitrate = int(min(max(wanted, vpx.MIN_BITRATE), vpx.MAX_BITRATE))
        return EncoderSettings(bitrate_bps=bitrate, resolution_scale=1.0, fps=self._source_fps)

    def _frame_time(self, frame: VideoFrame) -> float | None:
        """The frame's timestamp in seconds; also tracks the source frame rate."""
        if frame.pts is None or frame.time_base is None:
            return None
        seconds = float(frame.pts * Fraction(frame.time_base))
        if self._last_time is not None and seconds > self._last_time:
            instant = min(_MAX_FPS, 1.0 / (seconds - self._last_time))
            if self._fps_measured:
                self._source_fps += 0.2 * (instant - self._source_fps)
            else:  # the guess is no evidence: the first interval replaces it
                self._source_fps, self._fps_measured = instant, True
        self._last_time = seconds
        return seconds

    def _due(self, seconds: float | None, fps: float) -> bool:
        if seconds is None or fps >= self._source_fps * 0.999:
            self._next_due = None
            return True
        interval = 1.0 / fps
        # Half a source interval of tolerance, so 15 of 30 fps keeps exactly every second frame.
        if self._next_due is None or seconds >= self._next_due - 0.5 / self._source_fps:
            self._next_due = (seconds if self._next_due is None else max(seconds, self._next_due)) + interval
            return True
        return False

    def _adopted(self) -> ControlledVp8Encoder | None:
        if self._encoder is not None or self._unsupported or self._sender is None:
            return self._encoder
        encoder = getattr(self._sender, _ENCODER_ATTRIBUTE, None)
        if encoder is None:  # aiortc creates it after the first frame
            return None
        try:
            self._encoder = adopt_encoder(
                encoder,
                floor=self._floor,
                ceiling=self._ceiling,
                options=self._effort_options(),
                timer=self._encode_timer,
            )
        except UnsupportedEncoder as exc:
            self._unsupported = True
            logger.warning("%s", exc)
        return self._encoder

    def _effort_options(self) -> dict[str, str]:
        """The libvpx options to code with: the caller's, with the governor's ``cpu-used`` if there is one."""
        if self._governor is None:
            return self._options
        return self._options | {"cpu-used": str(self._governor.cpu_used)}

    def _govern_effort(self, now: float, frame_interval: float) -> None:
        """Feed the encode times measured since the last frame to the governor; apply a change of level."""
        encoder = self._encoder
        if encoder is None or self._governor is None:
            return
        while encoder.encodes:
            seconds, opened = encoder.encodes.popleft()
            self._governor.observe(seconds, frame_interval, now, opened=opened)
        wanted = self._effort_options()
        if wanted != encoder.options:  # re-created with the new cpu-used on the next frame (one keyframe)
            adopt_encoder(encoder, floor=self._floor, ceiling=self._ceiling, options=wanted)

    def _apply_bitrate(self, bitrate_bps: int, network: NetworkStats) -> None:
        encoder = self._adopted()
        if encoder is None:
            return
        cap = max(self._floor, int(network.bandwidth_bps))
        wanted = min(bitrate_bps, cap)
        current = encoder.target_bitrate
        if current <= cap and abs(wanted - current) <= self._hysteresis * current:
            return
        if encoder.set_target(wanted) != current:
            self._bitrate_changes += 1


class AICVideoTrack(MediaStreamTrack):
    """A video track that reads another and sends it at the size and rate its controller chooses."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, controller: AICController) -> None:
        super().__init__()
        if source.kind != "video":
            raise LocalProtocolError(f"AIC needs a video track, not {source.kind!r}")
        self.source = source
        """The track read from."""
        self.controller = controller
        """The controller that decides what is sent."""

    async def recv(self) -> Frame:
        """The next frame to send; frames dropped for the hinted rate are skipped, not returned."""
        while True:
            frame = await self.source.recv()
            if not isinstance(frame, VideoFrame):
                raise LocalProtocolError(f"AIC needs video frames, not {type(frame).__name__}")
            out = self.controller.process(frame)
            if out is not None:
                return out

    def stop(self) -> None:
        """Stop this track and its source."""
        super().stop()
        self.source.stop()


def _is_keyframe(payload: bytes) -> bool:
    """Whether an aiortc VP8 RTP payload starts a keyframe (RFC 7741 4.2 descriptor, then RFC 6386 9.1 P bit)."""
    data = vpx.vp8_depayload(payload)
    return bool(data) and data[0] & 1 == 0


def _luma(frame: VideoFrame) -> npt.NDArray[np.uint8]:
    """The Y plane as a view (no copy) for ``yuv420p``; converted otherwise."""
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        frame = frame.reformat(format="yuv420p")
    plane = frame.planes[0]
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(frame.height, plane.line_size)
    return rows[:, : frame.width]
