"""AIC's aiortc adapter: per-encoder limits, REMB capture, hysteresis, deadline fallback, the track, and a real call."""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("aiortc")

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.codecs import vpx
from aiortc.codecs.h264 import H264Encoder
from aiortc.mediastreams import MediaStreamTrack
from av import VideoFrame
from av.video.frame import PictureType

from auralink.aic import AnalyticRateModel, FrameStats, HintEngine, Mode, NetworkStats, UnsupportedEncoder
from auralink.aic.controller import (
    AICController,
    ControlledVp8Encoder,
    adopt_encoder,
    set_encoder_bitrate,
)
from auralink.errors import LocalProtocolError

TIME_BASE = fractions.Fraction(1, 90_000)


def textured(height: int, width: int, shift: int = 0, seed: int = 3) -> npt.NDArray[np.uint8]:
    """A smooth random RGB texture moved ``shift`` pixels to the right."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0 : width + 64].astype(np.float64)
    image = np.zeros_like(x)
    for _ in range(6):
        fx, fy = rng.uniform(-1.0, 1.0, 2) * 2 * np.pi / 24
        image += np.sin(fx * x + fy * y + rng.uniform(0, 2 * np.pi))
    gray = np.clip(128 + 30 * image, 0, 255)[:, shift : shift + width]
    return np.repeat(gray[:, :, None], 3, axis=2).astype(np.uint8)


def video_frame(index: int, height: int = 120, width: int = 160, *, shift_per_frame: int = 0) -> VideoFrame:
    frame = VideoFrame.from_ndarray(textured(height, width, index * shift_per_frame), format="rgb24")
    frame = frame.reformat(format="yuv420p")
    frame.pts = index * 3000  # 30 fps on the 90 kHz clock
    frame.time_base = TIME_BASE
    frame.pict_type = PictureType.I  # as decoded from a file: must not reach the encoder
    return frame


class Clock:
    """A hand-stepped clock; each reading advances it by ``step``."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 100.0
        self.step = step

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        return value


GOOD_NETWORK = NetworkStats(rtt_s=0.05, loss=0.0, jitter_s=0.005, bandwidth_bps=3_000_000)


# --- the encoder seam -----------------------------------------------------------------------------------------


def test_widened_limits_apply_to_one_encoder_and_leave_the_globals_alone() -> None:
    mine, other = vpx.Vp8Encoder(), vpx.Vp8Encoder()
    assert set_encoder_bitrate(mine, 60_000, floor=30_000, ceiling=4_000_000) == 60_000
    assert mine.target_bitrate == 60_000
    other.target_bitrate = 60_000
    assert other.target_bitrate == vpx.MIN_BITRATE == 250_000
    assert (vpx.MIN_BITRATE, vpx.MAX_BITRATE) == (250_000, 1_500_000)
    assert set_encoder_bitrate(mine, 10, floor=30_000, ceiling=4_000_000) == 30_000


def test_adopted_encoder_records_remb_instead_of_applying_it() -> None:
    encoder = adopt_encoder(vpx.Vp8Encoder(), floor=30_000, ceiling=2_000_000)
    assert isinstance(encoder, ControlledVp8Encoder)
    encoder.set_target(120_000)
    encoder.target_bitrate = 900_000  # what RTCRtpSender does with a REMB
    assert encoder.remb_bps == 900_000
    assert encoder.target_bitrate == 120_000
    assert encoder.set_target(10_000_000) == 2_000_000
    assert adopt_encoder(encoder, floor=40_000, ceiling=300_000) is encoder  # idempotent; new limits
    assert encoder.set_target(10_000_000) == 300_000


def test_only_vp8_encoders_can_be_adopted() -> None:
    with pytest.raises(UnsupportedEncoder, match="H264Encoder") as caught:
        adopt_encoder(H264Encoder())
    assert caught.value.encoder_type == "H264Encoder"


def test_encoder_codes_at_a_target_below_aiortcs_floor() -> None:
    encoder = adopt_encoder(vpx.Vp8Encoder())
    encoder.set_target(60_000)
    sizes = []
    for index in range(30):
        payloads, _ = encoder.encode(video_frame(index, shift_per_frame=2))
        sizes.append(sum(len(p) for p in payloads))
    assert encoder.codec is not None
    assert encoder.codec.bit_rate == 60_000
    kilobits_per_second = sum(sizes[1:]) * 8 / (29 / 30) / 1000
    assert kilobits_per_second < 150  # aiortc alone would spend at least 250


# --- the controller ---------------------------------------------------------------------------------------------


def controller_with_sender(
    engine: HintEngine | None = None, clock: Clock | None = None
) -> tuple[AICController, SimpleNamespace]:
    controller = AICController(
        engine or HintEngine(Mode.AGGRESSIVE, model=AnalyticRateModel()), clock=clock or Clock(), network=GOOD_NETWORK
    )
    sender = SimpleNamespace(_RTCRtpSender__encoder=None)
    controller.attach(sender)
    return controller, sender


def test_encoder_is_adopted_once_aiortc_creates_it() -> None:
    controller, sender = controller_with_sender()
    assert controller.process(video_frame(0)) is not None
    assert controller.metrics().target_bitrate_bps is None  # aiortc creates the encoder after the first frame
    sender._RTCRtpSender__encoder = vpx.Vp8Encoder()
    controller.process(video_frame(1))
    metrics = controller.metrics()
    assert isinstance(sender._RTCRtpSender__encoder, ControlledVp8Encoder)
    assert metrics.target_bitrate_bps is not None
    assert metrics.target_bitrate_bps < vpx.MIN_BITRATE  # a small still picture needs less than aiortc's floor
    assert metrics.bitrate_changes == 1


def test_steady_content_does_not_re_create_the_encoder() -> None:
    controller, sender = controller_with_sender()
    sender._RTCRtpSender__encoder = vpx.Vp8Encoder()
    for index in range(60):
        controller.process(video_frame(index))
    assert controller.metrics().bitrate_changes == 1
    assert controller.metrics().hints == 60


def test_target_never_exceeds_the_receivers_estimate() -> None:
    controller, sender = controller_with_sender(HintEngine(Mode.CONSERVATIVE, model=AnalyticRateModel()))
    sender._RTCRtpSender__encoder = vpx.Vp8Encoder()
    for index in range(3):
        controller.process(video_frame(index, 480, 640, shift_per_frame=6))
    encoder = sender._RTCRtpSender__encoder
    rich = encoder.target_bitrate
    encoder.target_bitrate = 90_000  # a REMB: the receiver says the path carries 90 kbps
    for index in range(3, 6):
        controller.process(video_frame(index, 480, 640, shift_per_frame=6))
    assert controller.network.bandwidth_bps == 90_000
    assert encoder.target_bitrate <= 90_000 < rich
    assert controller.metrics().remb_bps == 90_000


def test_stale_hints_fall_back_to_native_settings_and_are_counted() -> None:
    clock = Clock(step=0.06)  # every reading 60 ms later: the hint is stale by the time it is applied
    controller, sender = controller_with_sender(clock=clock)
    sender._RTCRtpSender__encoder = vpx.Vp8Encoder()
    for index in range(4):
        out = controller.process(video_frame(index))
        assert out is not None
        assert (out.width, out.height) == (160, 120)
    metrics = controller.metrics()
    assert metrics.fallbacks == 4
    # Native: aiortc's own start, 500 kbps within its global limits, at full size and rate.
    assert metrics.target_bitrate_bps == vpx.DEFAULT_BITRATE


def frame_at(index: int, fps: int) -> VideoFrame:
    frame = video_frame(index)
    frame.pts = index * 90_000 // fps
    return frame


def hinted_fps(controller: AICController) -> float:
    hint = controller.metrics().last_hint
    assert hint is not None
    return hint.fps


def test_a_known_source_rate_is_used_from_the_first_frame() -> None:
    controller = AICController(HintEngine(model=AnalyticRateModel()), clock=Clock(), source_fps=25.0)
    controller.process(frame_at(0, 25))
    assert hinted_fps(controller) == pytest.approx(25.0)
    for index in range(1, 60):  # 2.4 s: past the dwell, nothing to change or decline
        controller.process(frame_at(index, 25))
        assert hinted_fps(controller) == pytest.approx(25.0)
    assert controller.metrics().switches_declined == 0


def test_without_a_known_rate_the_first_interval_replaces_the_30_fps_guess() -> None:
    controller = AICController(HintEngine(model=AnalyticRateModel()), clock=Clock())
    controller.process(frame_at(0, 25))
    assert hinted_fps(controller) == pytest.approx(30.0)
    controller.process(frame_at(1, 25))
    assert hinted_fps(controller) == pytest.approx(25.0)  # not 29, as a moving average from 30 would say
    controller.process(frame_at(2, 25))
    assert hinted_fps(controller) == pytest.approx(25.0)


@pytest.mark.parametrize("fps", [0.0, -25.0, float("nan"), float("inf"), 1000.0])
def test_an_impossible_source_rate_is_refused(fps: float) -> None:
    with pytest.raises(LocalProtocolError, match="source_fps"):
        AICController(HintEngine(model=AnalyticRateModel()), source_fps=fps)


class CheapestRungModel(AnalyticRateModel):
    """A model under which no target is reachable and the smallest, slowest rung looks best (to test the track)."""

    def required_bitrate(self, frame: FrameStats, quality: float, scale: float, fps: float) -> float:
        return float("inf")

    def predicted_quality(self, frame: FrameStats, bitrate_bps: float, scale: float, fps: float) -> float:
        return 100.0 - 50.0 * scale * fps / frame.fps


def test_track_scales_frames_drops_to_the_hinted_rate_and_resets_picture_types() -> None:
    controller, _ = controller_with_sender(HintEngine(Mode.ADAPTIVE, model=CheapestRungModel(), min_bitrate=1))
    controller.update_network(NetworkStats(rtt_s=0.05, loss=0.0, jitter_s=0.0, bandwidth_bps=8_000))  # starved
    sent = [controller.process(video_frame(index, 480, 640)) for index in range(10)]
    kept = [frame for frame in sent if frame is not None]
    assert len(kept) == 5  # 15 of 30 fps: every second frame
    assert {(frame.width, frame.height) for frame in kept} == {(160, 120)}  # scale 0.25
    assert {frame.pict_type for frame in kept} == {PictureType.NONE}
    assert [frame.pts for frame in kept] == [0, 6000, 12000, 18000, 24000]
    assert controller.metrics().frames_dropped == 5


# --- a real call over loopback ----------------------------------------------------------------------------------


class TextureTrack(MediaStreamTrack):
    """A finite 30 fps source of slowly panning frames, with no real-time pacing."""

    kind = "video"

    def __init__(self, count: int) -> None:
        super().__init__()
        self._frames: Iterator[int] = iter(range(count))

    async def recv(self) -> VideoFrame:
        index = next(self._frames, None)
        if index is None:
            await asyncio.Event().wait()  # the source is exhausted; the sender waits until stopped
        assert index is not None
        await asyncio.sleep(1 / 30)  # pace the source like a camera
        return video_frame(index, shift_per_frame=1)


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice never offers 127.0.0.1 as a host candidate; make it the only one, so the call stays on loopback."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.mark.usefixtures("loopback_ice")
async def test_real_call_is_driven_below_aiortcs_floor() -> None:
    caller = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: nothing leaves the machine
    callee = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    controller = AICController(HintEngine(Mode.AGGRESSIVE, model=AnalyticRateModel()))
    sender = caller.addTrack(controller.wrap(TextureTrack(count=90)))
    controller.attach(sender)
    received: list[VideoFrame] = []
    enough = asyncio.Event()

    @callee.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def pull() -> None:
            while len(received) < 20:
                frame = await track.recv()
                assert isinstance(frame, VideoFrame)
                received.append(frame)
            enough.set()

        tasks.append(asyncio.ensure_future(pull()))

    tasks: list[asyncio.Future[None]] = []
    try:
        await caller.setLocalDescription(await caller.createOffer())
        await callee.setRemoteDescription(caller.localDescription)
        await callee.setLocalDescription(await callee.createAnswer())
        await caller.setRemoteDescription(callee.localDescription)
        await asyncio.wait_for(enough.wait(), timeout=20)
    finally:
        for task in tasks:
            task.cancel()
        await caller.close()
        await callee.close()
    metrics = controller.metrics()
    assert len(received) == 20
    assert metrics.target_bitrate_bps is not None
    assert metrics.target_bitrate_bps < vpx.MIN_BITRATE
    assert metrics.bitrate_changes <= 2
    assert metrics.fallbacks == 0
    assert (received[-1].width, received[-1].height) == (160, 120)
