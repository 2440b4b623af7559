"""AIC cores: feature extraction from luma, and the hint engine's monotonicity, budget, deadline and hysteresis."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from auralink.aic import (
    AnalyticRateModel,
    EncoderSettings,
    FeatureExtractor,
    FrameStats,
    HintEngine,
    Mode,
    NetworkStats,
    RateQualityModel,
    extract_features,
    load_rate_model,
    usable_bandwidth,
)
from auralink.aic.engine import STARVED_BITS_PER_PIXEL
from auralink.errors import LocalProtocolError

ROOT = Path(__file__).resolve().parent.parent
AIC_CORES = ["auralink/aic/engine.py", "auralink/aic/features.py"]
MODES_LOW_TO_HIGH = [Mode.AGGRESSIVE, Mode.ADAPTIVE, Mode.CONSERVATIVE]
TALKING_HEAD = FrameStats(width=640, height=480, fps=30.0, spatial_information=40.0, temporal_information=5.0)
GOOD_NETWORK = NetworkStats(rtt_s=0.05, loss=0.0, jitter_s=0.005, bandwidth_bps=5_000_000)


def texture(
    height: int, width: int, seed: int, *, period: float = 32.0, contrast: float = 12.0
) -> npt.NDArray[np.float64]:
    """A smooth, camera-like random texture: a sum of sinusoids with periods of about ``period`` pixels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width))
    for _ in range(8):
        fx, fy = rng.uniform(-1.0, 1.0, 2) * 2 * np.pi / period
        image += np.sin(fx * x + fy * y + rng.uniform(0.0, 2 * np.pi))
    return np.clip(128.0 + contrast * image, 0.0, 255.0)


def shifted_pair(shift: int = 1) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Two 640x480 frames of one texture, the second moved ``shift`` pixels to the right."""
    canvas = texture(480, 640 + shift, seed=1)
    return canvas[:, shift:].astype(np.uint8), canvas[:, :640].astype(np.uint8)


# --- cores stay pure ------------------------------------------------------------------------------------------


def test_aic_cores_import_no_io_or_clocks() -> None:
    forbidden = {"asyncio", "socket", "time", "selectors", "threading", "random"}
    for relative in AIC_CORES:
        tree = ast.parse((ROOT / relative).read_text())
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        assert not names & forbidden, relative


# --- features -------------------------------------------------------------------------------------------------


def test_flat_frame_has_no_spatial_or_temporal_information() -> None:
    flat = np.full((480, 640), 117, dtype=np.uint8)
    stats = extract_features(flat, flat.copy(), 30.0)
    assert stats.spatial_information == pytest.approx(0.0, abs=1e-4)
    assert stats.temporal_information == pytest.approx(0.0, abs=1e-4)
    assert stats.motion == 0.0
    assert not stats.scene_change
    assert (stats.width, stats.height, stats.fps) == (640, 480, 30.0)


def test_first_frame_has_no_temporal_information() -> None:
    stats = extract_features(texture(480, 640, seed=3).astype(np.uint8), None, 25.0)
    assert stats.spatial_information > 1.0
    assert stats.temporal_information == 0.0
    assert not stats.scene_change


def test_shifted_texture_has_temporal_information_and_motion() -> None:
    before, after = shifted_pair(shift=1)
    still = extract_features(before, before, 30.0)
    moving = extract_features(after, before, 30.0)
    assert still.temporal_information == 0.0
    assert moving.temporal_information > 1.0
    assert 0.5 < moving.motion < 2.0  # about one full-resolution pixel per frame
    assert not moving.scene_change


def test_more_detail_gives_more_spatial_information() -> None:
    smooth = extract_features(texture(480, 640, seed=4, contrast=6.0).astype(np.uint8), None, 30.0)
    sharp = extract_features(texture(480, 640, seed=4, contrast=24.0).astype(np.uint8), None, 30.0)
    assert sharp.spatial_information > 3 * smooth.spatial_information


def test_cut_between_unrelated_pictures_is_a_scene_change() -> None:
    first = texture(480, 640, seed=5, contrast=40.0).astype(np.uint8)
    second = texture(480, 640, seed=6, contrast=40.0).astype(np.uint8)
    stats = extract_features(second, first, 30.0)
    assert stats.temporal_information >= 45.0
    assert stats.scene_change


def test_extractor_flags_a_cut_against_its_history_but_not_steady_motion() -> None:
    canvas = texture(480, 700, seed=7)
    extractor = FeatureExtractor()
    flags = [extractor.push(canvas[:, step : step + 640].astype(np.uint8), 30.0).scene_change for step in range(8)]
    assert flags == [False] * 8
    cut = extractor.push(texture(480, 640, seed=8).astype(np.uint8), 30.0)
    assert cut.temporal_information < 45.0  # too small for the fixed bound alone
    assert cut.scene_change
    assert not extractor.push(texture(480, 640, seed=8).astype(np.uint8), 30.0).scene_change


def test_extractor_matches_the_stateless_function() -> None:
    before, after = shifted_pair()
    extractor = FeatureExtractor()
    extractor.push(before, 30.0)
    assert extractor.push(after, 30.0) == extract_features(after, before, 30.0)


def test_extractor_restarts_when_the_frame_size_changes() -> None:
    extractor = FeatureExtractor()
    extractor.push(texture(480, 640, seed=9).astype(np.uint8), 30.0)
    stats = extractor.push(texture(240, 320, seed=9).astype(np.uint8), 30.0)
    assert stats.temporal_information == 0.0
    assert (stats.width, stats.height) == (320, 240)


@pytest.mark.parametrize("stride", [2, 4])
def test_downscaled_measures_stay_close_to_full_resolution(stride: int) -> None:
    before, after = shifted_pair()
    full = extract_features(after, before, 30.0, stride=1)
    small = extract_features(after, before, 30.0, stride=stride)
    assert small.spatial_information == pytest.approx(full.spatial_information, rel=0.15)
    assert small.temporal_information == pytest.approx(full.temporal_information, rel=0.15)
    assert small.motion == pytest.approx(full.motion, rel=0.25)


def test_default_stride_targets_about_160x120() -> None:
    before, after = shifted_pair()
    assert extract_features(after, before, 30.0) == extract_features(after, before, 30.0, stride=4)


def test_float_frames_measure_like_uint8_frames() -> None:
    before, after = shifted_pair()
    as_uint8 = extract_features(after, before, 30.0)
    as_float = extract_features(after.astype(np.float32), before.astype(np.float64), 30.0)
    assert as_float.spatial_information == pytest.approx(as_uint8.spatial_information, rel=1e-4)
    assert as_float.temporal_information == pytest.approx(as_uint8.temporal_information, rel=1e-4)


FRAME = np.zeros((48, 64), dtype=np.uint8)


@pytest.mark.parametrize(
    ("luma", "previous", "fps", "message"),
    [
        (FRAME, None, float("nan"), "fps"),
        (FRAME, None, -30.0, "fps"),
        (FRAME, None, 0.0, "fps"),
        (FRAME, None, float("inf"), "fps"),
        (np.zeros((0, 64), dtype=np.uint8), None, 30.0, "at least"),
        (np.zeros((48, 0), dtype=np.uint8), None, 30.0, "at least"),
        (np.zeros((2, 2), dtype=np.uint8), None, 30.0, "at least"),
        (np.zeros((48, 64, 3), dtype=np.uint8), None, 30.0, "2-D"),
        (np.zeros(64, dtype=np.uint8), None, 30.0, "2-D"),
        (np.zeros((48, 64), dtype=np.int64), None, 30.0, "dtype"),
        (np.zeros((48, 64), dtype=np.uint16), None, 30.0, "dtype"),
        (np.zeros((48, 64), dtype=bool), None, 30.0, "dtype"),
        (np.full((48, 64), np.nan, dtype=np.float32), None, 30.0, "NaN"),
        (FRAME, np.full((48, 64), np.inf), 30.0, "NaN"),
        (FRAME, np.zeros((24, 32), dtype=np.uint8), 30.0, "shape"),
        ([[0, 0, 0]] * 3, None, 30.0, "numpy array"),
    ],
)
def test_bad_frames_raise_a_clear_error(luma: object, previous: object, fps: float, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        extract_features(luma, previous, fps)  # type: ignore[arg-type]


def test_bad_stride_raises_a_clear_error() -> None:
    with pytest.raises(LocalProtocolError, match="stride"):
        extract_features(FRAME, None, 30.0, stride=0)
    with pytest.raises(LocalProtocolError, match="stride"):
        extract_features(FRAME, None, 30.0, stride=32)


@pytest.mark.parametrize(
    "changes",
    [
        {"width": 0},
        {"height": -1},
        {"width": 64.0},
        {"fps": float("nan")},
        {"fps": -1.0},
        {"spatial_information": float("nan")},
        {"temporal_information": -0.1},
        {"motion": float("inf")},
    ],
)
def test_bad_frame_stats_raise_a_clear_error(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "width": 64,
        "height": 48,
        "fps": 30.0,
        "spatial_information": 1.0,
        "temporal_information": 1.0,
    }
    with pytest.raises(LocalProtocolError, match=f"FrameStats.{next(iter(changes))}"):
        FrameStats(**(fields | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"rtt_s": -0.01},
        {"rtt_s": float("nan")},
        {"loss": 1.5},
        {"loss": -0.1},
        {"jitter_s": float("inf")},
        {"bandwidth_bps": -1.0},
        {"bandwidth_bps": float("nan")},
    ],
)
def test_bad_network_stats_raise_a_clear_error(changes: dict[str, float]) -> None:
    fields = {"rtt_s": 0.05, "loss": 0.0, "jitter_s": 0.005, "bandwidth_bps": 1e6}
    with pytest.raises(LocalProtocolError, match=f"NetworkStats.{next(iter(changes))}"):
        NetworkStats(**(fields | changes))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"deadline": 0.0},
        {"deadline": float("nan")},
        {"min_bitrate": -1},
        {"max_bitrate": 0},
        {"min_bitrate": 2_000_000, "max_bitrate": 1_000_000},
        {"hysteresis": -0.1},
    ],
)
def test_bad_engine_settings_raise_a_clear_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(LocalProtocolError):
        HintEngine(Mode.ADAPTIVE, **kwargs)  # type: ignore[arg-type]


def test_bad_now_raises_a_clear_error() -> None:
    with pytest.raises(LocalProtocolError, match="now"):
        HintEngine().hint(TALKING_HEAD, GOOD_NETWORK, float("nan"))


# --- hint engine ----------------------------------------------------------------------------------------------

frame_stats = st.builds(
    FrameStats,
    width=st.sampled_from([176, 320, 640, 1280, 1920]),
    height=st.sampled_from([144, 240, 480, 720, 1080]),
    fps=st.sampled_from([10.0, 15.0, 24.0, 30.0, 60.0]),
    spatial_information=st.floats(0.0, 200.0),
    temporal_information=st.floats(0.0, 100.0),
    motion=st.floats(0.0, 20.0),
    scene_change=st.booleans(),
)
network_stats = st.builds(
    NetworkStats,
    rtt_s=st.floats(0.0, 2.0),
    loss=st.floats(0.0, 1.0),
    jitter_s=st.floats(0.0, 0.5),
    bandwidth_bps=st.floats(0.0, 20e6),
)
modes = st.sampled_from(list(Mode))
ANALYTIC = AnalyticRateModel()
TRAINED = load_rate_model()
models = st.sampled_from([ANALYTIC, TRAINED])
"""The properties hold for the analytic placeholder and for the trained model shipped in the package."""


def bitrate(mode: Mode, frame: FrameStats, net: NetworkStats, model: RateQualityModel = ANALYTIC) -> int:
    """The target of a fresh engine (no hysteresis history)."""
    return HintEngine(mode, model=model).hint(frame, net, now=0.0).target_bitrate_bps


def analytic_engine(mode: Mode = Mode.ADAPTIVE, **kwargs: float) -> HintEngine:
    """An engine on the analytic model, whose numbers the example-based tests below were written against."""
    return HintEngine(mode, model=ANALYTIC, **kwargs)  # type: ignore[arg-type]


@given(modes, frame_stats, network_stats, network_stats, models)
def test_worse_network_never_raises_the_bitrate(
    mode: Mode, frame: FrameStats, net: NetworkStats, other: NetworkStats, model: RateQualityModel
) -> None:
    worse = NetworkStats(
        rtt_s=max(net.rtt_s, other.rtt_s),
        loss=max(net.loss, other.loss),
        jitter_s=max(net.jitter_s, other.jitter_s),
        bandwidth_bps=min(net.bandwidth_bps, other.bandwidth_bps),
    )
    assert bitrate(mode, frame, worse, model) <= bitrate(mode, frame, net, model)


@given(modes, frame_stats, network_stats, st.floats(0.0, 100.0), st.floats(0.0, 50.0), models)
def test_more_complex_content_never_lowers_the_bitrate(  # noqa: PLR0917 - one argument per Hypothesis strategy
    mode: Mode, frame: FrameStats, net: NetworkStats, more_si: float, more_ti: float, model: RateQualityModel
) -> None:
    harder = FrameStats(
        width=frame.width,
        height=frame.height,
        fps=frame.fps,
        spatial_information=frame.spatial_information + more_si,
        temporal_information=frame.temporal_information + more_ti,
        motion=frame.motion,
        scene_change=frame.scene_change,
    )
    assert bitrate(mode, harder, net, model) >= bitrate(mode, frame, net, model)


@given(frame_stats, network_stats, models)
def test_modes_are_ordered(frame: FrameStats, net: NetworkStats, model: RateQualityModel) -> None:
    rates = [bitrate(mode, frame, net, model) for mode in MODES_LOW_TO_HIGH]
    assert rates == sorted(rates)


@given(modes, frame_stats, network_stats, models)
def test_hint_never_exceeds_usable_bandwidth_and_is_well_formed(
    mode: Mode, frame: FrameStats, net: NetworkStats, model: RateQualityModel
) -> None:
    hint = HintEngine(mode, model=model).hint(frame, net, now=10.0)
    assert hint.target_bitrate_bps <= usable_bandwidth(net)
    assert usable_bandwidth(net) <= net.bandwidth_bps * (1 - net.loss)
    assert 0.0 < hint.resolution_scale <= 1.0
    assert 0.0 < hint.fps <= frame.fps
    assert 0.0 <= hint.predicted_quality <= 100.0
    assert 0.0 <= hint.confidence <= model.confidence <= 1.0
    assert hint.mode is mode
    assert hint.deadline == pytest.approx(10.05)


@given(modes, st.lists(st.tuples(frame_stats, network_stats), min_size=2, max_size=8), models)
def test_hysteresis_never_keeps_a_bitrate_the_network_cannot_carry(
    mode: Mode, steps: list[tuple[FrameStats, NetworkStats]], model: RateQualityModel
) -> None:
    engine = HintEngine(mode, model=model)
    for now, (frame, net) in enumerate(steps):
        assert engine.hint(frame, net, float(now)).target_bitrate_bps <= usable_bandwidth(net)


def test_a_poor_network_scales_resolution_down() -> None:
    sports = FrameStats(width=640, height=480, fps=30.0, spatial_information=80.0, temporal_information=40.0)
    rich = analytic_engine(Mode.ADAPTIVE).hint(sports, GOOD_NETWORK, now=0.0)
    poor = analytic_engine(Mode.ADAPTIVE).hint(sports, NetworkStats(0.05, 0.02, 0.005, 150_000), now=0.0)
    assert rich.resolution_scale == 1.0
    assert poor.resolution_scale < 1.0
    assert poor.predicted_quality < rich.predicted_quality


class SmallPicturesLookBest(AnalyticRateModel):
    """A model that rates every smaller picture higher (as the trained model's resampling term did at low rates)."""

    def predicted_quality(self, frame: FrameStats, bitrate_bps: float, scale: float, fps: float) -> float:
        return 100.0 - 50.0 * scale


@pytest.mark.parametrize(
    ("kbps", "scale"),
    [(2_000, 1.0), (200, 1.0), (150, 0.75), (60, 0.5), (30, 0.375), (10, 0.25)],
)
def test_the_picture_keeps_its_size_while_the_budget_can_code_it(kbps: int, scale: float) -> None:
    """640x480 at 30 fps: full size down to 0.02 bits per pixel (184 kbps usable), whatever the model prefers."""
    engine = HintEngine(Mode.ADAPTIVE, model=SmallPicturesLookBest(), min_bitrate=1_000)
    net = NetworkStats(rtt_s=0.0, loss=0.0, jitter_s=0.0, bandwidth_bps=kbps * 1000 / 0.9)  # usable = kbps
    hint = engine.hint(TALKING_HEAD, net, 0.0)
    assert hint.resolution_scale == scale
    assert hint.fps == 30.0 or kbps * 1000 < STARVED_BITS_PER_PIXEL * 160 * 120 * 30


def test_still_content_costs_less_than_motion() -> None:
    sports = FrameStats(width=640, height=480, fps=30.0, spatial_information=80.0, temporal_information=40.0)
    assert bitrate(Mode.ADAPTIVE, TALKING_HEAD, GOOD_NETWORK) * 2 < bitrate(Mode.ADAPTIVE, sports, GOOD_NETWORK)


def test_bitrate_stays_within_engine_limits() -> None:
    engine = analytic_engine(Mode.CONSERVATIVE, min_bitrate=300_000, max_bitrate=600_000)
    sports = FrameStats(width=1920, height=1080, fps=60.0, spatial_information=150.0, temporal_information=80.0)
    flat = FrameStats(width=176, height=144, fps=10.0, spatial_information=0.0, temporal_information=0.0)
    assert engine.hint(sports, GOOD_NETWORK, 0.0).target_bitrate_bps == 600_000
    assert (
        analytic_engine(Mode.AGGRESSIVE, min_bitrate=300_000).hint(flat, GOOD_NETWORK, 0.0).target_bitrate_bps
        == 300_000
    )


def test_hint_ids_increase() -> None:
    engine = analytic_engine()
    assert [engine.hint(TALKING_HEAD, GOOD_NETWORK, now).hint_id for now in (0.0, 0.033, 0.066)] == [0, 1, 2]


def test_stale_hint_falls_back_to_native_settings_and_is_counted() -> None:
    engine = analytic_engine(Mode.ADAPTIVE, deadline=0.05)
    native = EncoderSettings(bitrate_bps=500_000, resolution_scale=1.0, fps=30.0)
    now = 100.0
    hint = engine.hint(TALKING_HEAD, GOOD_NETWORK, now)
    assert hint.deadline == pytest.approx(100.05)

    assert engine.is_fresh(hint, now + 0.049)
    assert engine.apply_or_native(hint, now + 0.049, native) == hint.settings
    assert engine.fallbacks == 0

    assert engine.is_fresh(hint, hint.deadline)  # the deadline itself is still in time
    assert not engine.is_fresh(hint, now + 0.051)
    assert engine.apply_or_native(hint, now + 0.051, native) == native
    assert engine.apply_or_native(hint, now + 1.0, native) == native
    assert engine.fallbacks == 2


def test_custom_deadline_is_honoured() -> None:
    engine = analytic_engine(deadline=0.2)
    hint = engine.hint(TALKING_HEAD, GOOD_NETWORK, now=5.0)
    assert engine.is_fresh(hint, 5.19)
    assert not engine.is_fresh(hint, 5.21)


def test_small_changes_keep_the_previous_bitrate() -> None:
    engine = analytic_engine(Mode.ADAPTIVE)
    first = engine.hint(TALKING_HEAD, GOOD_NETWORK, 0.0)
    busier = FrameStats(width=640, height=480, fps=30.0, spatial_information=42.0, temporal_information=5.3)
    assert 0 < bitrate(Mode.ADAPTIVE, busier, GOOD_NETWORK) - first.target_bitrate_bps < 0.1 * first.target_bitrate_bps
    second = engine.hint(busier, GOOD_NETWORK, 0.033)
    assert second.target_bitrate_bps == first.target_bitrate_bps
    assert (second.resolution_scale, second.fps) == (first.resolution_scale, first.fps)


def test_large_changes_pass_through_hysteresis() -> None:
    engine = analytic_engine(Mode.ADAPTIVE)
    first = engine.hint(TALKING_HEAD, GOOD_NETWORK, 0.0)
    busy = FrameStats(width=640, height=480, fps=30.0, spatial_information=60.0, temporal_information=15.0)
    second = engine.hint(busy, GOOD_NETWORK, 0.033)
    assert second.target_bitrate_bps > 1.1 * first.target_bitrate_bps
    assert second.target_bitrate_bps == bitrate(Mode.ADAPTIVE, busy, GOOD_NETWORK)


def test_hysteresis_yields_when_the_budget_drops_below_the_previous_bitrate() -> None:
    engine = analytic_engine(Mode.ADAPTIVE)
    first = engine.hint(TALKING_HEAD, GOOD_NETWORK, 0.0)
    squeezed = NetworkStats(
        0.05,
        0.0,
        0.005,
        bandwidth_bps=0.97 * first.target_bitrate_bps / usable_bandwidth(NetworkStats(0.05, 0.0, 0.005, 1.0)),
    )
    second = engine.hint(TALKING_HEAD, squeezed, 0.033)
    assert second.target_bitrate_bps < first.target_bitrate_bps
    assert second.target_bitrate_bps <= usable_bandwidth(squeezed)


def test_fallback_becomes_the_hysteresis_reference() -> None:
    engine = analytic_engine(Mode.ADAPTIVE)
    hint = engine.hint(TALKING_HEAD, GOOD_NETWORK, 0.0)
    native = EncoderSettings(bitrate_bps=int(hint.target_bitrate_bps * 1.05), resolution_scale=1.0, fps=30.0)
    engine.apply_or_native(hint, 1.0, native)
    assert engine.hint(TALKING_HEAD, GOOD_NETWORK, 1.0).target_bitrate_bps == native.bitrate_bps


def test_predicted_quality_meets_the_mode_target_on_a_good_network() -> None:
    targets = {Mode.AGGRESSIVE: 80.0, Mode.ADAPTIVE: 87.0, Mode.CONSERVATIVE: 93.0}
    for mode, quality in targets.items():
        assert analytic_engine(mode).hint(TALKING_HEAD, GOOD_NETWORK, 0.0).predicted_quality == pytest.approx(
            quality, abs=0.5
        )
    assert math.isfinite(usable_bandwidth(GOOD_NETWORK))
