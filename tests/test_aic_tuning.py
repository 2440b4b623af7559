"""AIC's controller: libvpx options per encoder (the denoiser off), and changes held for a dwell or taken at cuts."""

from __future__ import annotations

import fractions
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("aiortc")

import av
from aiortc.codecs import vpx
from av import VideoFrame
from av.video.frame import PictureType

from auralink.aic import AnalyticRateModel, FrameStats, HintEngine, Mode, NetworkStats
from auralink.aic.controller import (
    TUNED_VP8_OPTIONS,
    AICController,
    ControlledVp8Encoder,
    TunedCodecContext,
    adopt_encoder,
)
from auralink.errors import LocalProtocolError
from tests.test_aic_controller import textured, video_frame

GOOD_NETWORK = NetworkStats(rtt_s=0.05, loss=0.0, jitter_s=0.0, bandwidth_bps=3_000_000)


def noisy_frame(index: int) -> VideoFrame:
    rng = np.random.default_rng(index)
    picture = textured(120, 160).astype(np.float64) + rng.normal(0.0, 6.0, (120, 160, 3))
    return frame_of(np.clip(picture, 0, 255).astype(np.uint8), index)


def bitstream(encoder: vpx.Vp8Encoder, count: int = 6) -> bytes:
    """What the encoder codes for a few noisy frames, without the (random) picture ids."""
    out = b""
    for index in range(count):
        frame = noisy_frame(index)
        frame.pict_type = PictureType.NONE
        payloads, _ = encoder.encode(frame)
        out += b"".join(vpx.vp8_depayload(p) for p in payloads)
    return out


def test_tuned_context_merges_overrides_into_the_options_aiortc_sets() -> None:
    context = av.CodecContext.create("libvpx", "w")
    wrapped = TunedCodecContext(context, TUNED_VP8_OPTIONS)
    wrapped.options = {"noise-sensitivity": "4", "cpu-used": "-6", "bufsize": "120000"}
    wrapped.width = 160
    assert context.options == {
        "noise-sensitivity": "0",
        "cpu-used": "-6",
        "bufsize": "120000",
        "rc_init_occupancy": "120000",  # named in braces: aiortc's own value, per context
    }
    assert context.width == 160
    assert wrapped.context is context


def test_an_override_naming_an_option_aiortc_did_not_set_is_left_out() -> None:
    context = av.CodecContext.create("libvpx", "w")
    TunedCodecContext(context, TUNED_VP8_OPTIONS).options = {"cpu-used": "-6"}
    assert context.options == {"cpu-used": "-6", "noise-sensitivity": "0"}


def test_the_first_keyframe_is_coded_finer_with_a_full_buffer() -> None:
    """libvpx's default start codes the first keyframe at its worst quantizer; a full buffer does not."""
    start = {"noise-sensitivity": "0"}
    default = adopt_encoder(vpx.Vp8Encoder(), options=start)
    full = adopt_encoder(vpx.Vp8Encoder(), options={**start, "rc_init_occupancy": "{bufsize}"})
    first: list[int] = []
    for encoder in (default, full):
        encoder.set_target(100_000)
        frame = noisy_frame(0)
        frame.pict_type = PictureType.NONE
        payloads, _ = encoder.encode(frame)
        first.append(sum(len(p) for p in payloads))
    assert first[1] > 1.3 * first[0]  # 1.5x measured: more bits spent on the first picture


def test_adopted_encoder_codes_with_the_denoiser_off_and_other_encoders_keep_it() -> None:
    plain = bitstream(vpx.Vp8Encoder())
    untouched = bitstream(adopt_encoder(vpx.Vp8Encoder(), options={}))
    tuned_encoder = adopt_encoder(vpx.Vp8Encoder())
    tuned = bitstream(tuned_encoder)
    assert untouched == plain  # adoption alone changes nothing libvpx does
    assert tuned != plain  # the denoiser setting reached libvpx
    assert isinstance(tuned_encoder.codec, TunedCodecContext)
    assert bitstream(vpx.Vp8Encoder()) == plain  # and other encoders in the process keep aiortc's


def test_adopting_an_open_encoder_re_creates_its_context_with_the_options() -> None:
    encoder = vpx.Vp8Encoder()
    encoder.encode(video_frame(0))
    adopted = adopt_encoder(encoder)
    assert adopted.codec is None  # dropped: the next frame opens a tuned context
    adopted.encode(video_frame(1))
    assert isinstance(adopted.codec, TunedCodecContext)


def test_empty_options_keep_aiortcs_context() -> None:
    encoder = vpx.Vp8Encoder()
    encoder.encode(video_frame(0))
    context = encoder.codec
    adopted = adopt_encoder(encoder, options={})
    assert adopted.codec is context
    assert isinstance(adopted, ControlledVp8Encoder)


@pytest.mark.parametrize(
    "options",
    [{"noise-sensitivity": 0}, {1: "0"}, {"rc_init_occupancy": "{nonsense}"}, {"sharpness": "{"}, {"x": "{}"}],
)
def test_bad_encoder_options_raise_a_clear_error(options: dict[object, object]) -> None:
    with pytest.raises(LocalProtocolError, match="encoder option"):
        adopt_encoder(vpx.Vp8Encoder(), options=options)  # type: ignore[arg-type]


def test_bad_dwell_raises_a_clear_error() -> None:
    with pytest.raises(LocalProtocolError, match="dwell"):
        AICController(HintEngine(model=AnalyticRateModel()), dwell=-1.0)


class MotionPricedModel(AnalyticRateModel):
    """Bits grow steeply with TI at full size and rate only (so the chosen rung never changes)."""

    def required_bitrate(self, frame: FrameStats, quality: float, scale: float, fps: float) -> float:
        if scale < 1.0 or fps < frame.fps:
            return float("inf")
        return 100_000.0 * (1.0 + frame.temporal_information)


TIME_BASE = fractions.Fraction(1, 90_000)


def frame_of(picture: np.ndarray, index: int) -> VideoFrame:
    frame = VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
    frame.pts, frame.time_base, frame.pict_type = index * 3000, TIME_BASE, PictureType.I
    return frame


def controller(dwell: float) -> tuple[AICController, SimpleNamespace]:
    """A controller whose changes are timed by the dwell and cuts alone (no keyframe-cost rule)."""
    engine = HintEngine(Mode.ADAPTIVE, model=MotionPricedModel(), min_bitrate=1, max_bitrate=50_000_000)
    control = AICController(
        engine, clock=lambda: 0.0, network=GOOD_NETWORK, dwell=dwell, ceiling_bps=50_000_000, switching=None
    )
    sender = SimpleNamespace(_RTCRtpSender__encoder=vpx.Vp8Encoder())
    control.attach(sender)
    return control, sender


def test_changes_wait_for_the_dwell_but_a_cut_applies_at_once() -> None:
    control, _ = controller(dwell=2.0)
    still = textured(120, 160)
    for index in range(10):  # a still picture: the first target is set
        control.process(frame_of(still, index))
    assert control.metrics().bitrate_changes == 1
    first = control.metrics().target_bitrate_bps
    for index in range(10, 40):  # steady motion starts: within the 2 s dwell, the target holds
        control.process(frame_of(textured(120, 160, shift=index - 9), index))
    assert control.metrics().bitrate_changes == 1
    assert control.metrics().target_bitrate_bps == first
    other = textured(120, 160, seed=11)  # an unrelated picture: a cut
    control.process(frame_of(np.clip(255 - other.astype(np.int16), 0, 255).astype(np.uint8), 40))
    assert control.metrics().bitrate_changes == 2


def test_without_dwell_motion_changes_the_target_within_two_seconds() -> None:
    control, _ = controller(dwell=0.0)
    still = textured(120, 160)
    for index in range(10):
        control.process(frame_of(still, index))
    for index in range(10, 40):
        control.process(frame_of(textured(120, 160, shift=index - 9), index))
    assert control.metrics().bitrate_changes >= 2


def test_a_dropping_network_estimate_applies_within_the_dwell() -> None:
    control, sender = controller(dwell=100.0)
    picture = textured(120, 160)
    for index in range(5):
        control.process(frame_of(picture, index))
    encoder = sender._RTCRtpSender__encoder
    before = encoder.target_bitrate
    encoder.target_bitrate = before // 2  # a REMB: the path carries half
    control.process(frame_of(picture, 5))
    assert encoder.target_bitrate <= before // 2


def test_without_an_estimate_the_receivers_remb_is_the_budget() -> None:
    control = AICController(HintEngine(Mode.CONSERVATIVE, model=AnalyticRateModel()), clock=lambda: 0.0)
    sender = SimpleNamespace(_RTCRtpSender__encoder=vpx.Vp8Encoder())
    control.attach(sender)
    control.process(frame_of(textured(120, 160), 0))
    assert control.network.bandwidth_bps == vpx.DEFAULT_BITRATE  # before any REMB: aiortc's start
    sender._RTCRtpSender__encoder.target_bitrate = 2_000_000  # a REMB above aiortc's start
    assert control.network.bandwidth_bps == 2_000_000
    control.update_network(NetworkStats(rtt_s=0.05, loss=0.0, jitter_s=0.0, bandwidth_bps=1_000_000))
    assert control.network.bandwidth_bps == 1_000_000  # a given estimate below the REMB wins


class HalfRateIsCheapModel(AnalyticRateModel):
    """Bits grow with the coded frame rate, so half rate would always be cheapest to reach a target."""

    def required_bitrate(self, frame: FrameStats, quality: float, scale: float, fps: float) -> float:
        return 10_000.0 * fps if scale == 1.0 else float("inf")


def test_frame_rate_is_not_cut_to_save_bits_when_the_network_can_carry_full_rate() -> None:
    frame = FrameStats(width=640, height=480, fps=30.0, spatial_information=40.0, temporal_information=5.0)
    hint = HintEngine(Mode.AGGRESSIVE, model=HalfRateIsCheapModel(), min_bitrate=1).hint(frame, GOOD_NETWORK, 0.0)
    assert hint.fps == 30.0
    assert hint.target_bitrate_bps == 300_000
