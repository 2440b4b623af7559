"""AIC's trained rate-quality model: the packaged file, its checks and fallback, its maths, and a training smoke run."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import auralink.aic.model as model_module
from auralink.aic import (
    AnalyticRateModel,
    FrameStats,
    HintEngine,
    Mode,
    NetworkStats,
    RateModelError,
    TrainedRateModel,
    default_rate_model,
    load_rate_model,
)

ROOT = Path(__file__).resolve().parent.parent
PACKAGED = ROOT / "auralink" / "aic" / "rate_model.npz"
TALKING_HEAD = FrameStats(width=640, height=480, fps=30.0, spatial_information=40.0, temporal_information=5.0)
GOOD_NETWORK = NetworkStats(rtt_s=0.05, loss=0.0, jitter_s=0.005, bandwidth_bps=5_000_000)


def test_packaged_model_loads_with_its_provenance() -> None:
    model = load_rate_model()
    assert isinstance(model, TrainedRateModel)
    assert PACKAGED.stat().st_size < 8_000
    provenance = json.loads(model.provenance)
    assert "carphone_pristine.mp4" in provenance["data"]
    assert "bikes" not in provenance["data"]  # evaluation clips stay out of training
    assert provenance["seed"] == 6
    assert provenance["encoder"].startswith("aiortc.codecs.vpx.Vp8Encoder")
    assert 0.0 < model.confidence <= 1.0
    assert model.quality_targets[Mode.AGGRESSIVE] < model.quality_targets[Mode.CONSERVATIVE]


def test_the_engine_uses_the_packaged_model_by_default() -> None:
    assert isinstance(HintEngine().model, TrainedRateModel)


def write_model(path: Path, **changes: object) -> Path:
    with np.load(PACKAGED, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays.update({key: np.asarray(value) for key, value in changes.items()})
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"format_version": 2}, "format_version"),
        ({"metric": "ssim"}, "metric"),
        ({"codec": [1.0, 0.5, 0.0, 0.0, 0.0, 0.0]}, "monotonicity"),
        ({"codec": [1.0, -0.5, 0.0, 0.0, -1.0, 0.0]}, "monotonicity"),
        ({"codec": [1.0, float("nan"), 0.0, 0.0, 0.0, 0.0]}, "finite"),
        ({"hold": [1.0]}, "hold"),
        ({"quality_targets": [38.0, 35.0, 32.0]}, "ordered"),
        ({"provenance": "not json"}, "JSON"),
    ],
)
def test_bad_model_files_raise_rate_model_error(tmp_path: Path, changes: dict[str, object], reason: str) -> None:
    path = write_model(tmp_path / "model.npz", **changes)
    with pytest.raises(RateModelError, match=reason) as caught:
        load_rate_model(path)
    assert caught.value.path == str(path)


def test_missing_or_truncated_files_raise_rate_model_error(tmp_path: Path) -> None:
    with pytest.raises(RateModelError, match="not found"):
        load_rate_model(tmp_path / "absent.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(PACKAGED.read_bytes()[:100])
    with pytest.raises(RateModelError, match="unreadable"):
        load_rate_model(truncated)


def test_engine_falls_back_to_the_analytic_model_when_the_file_is_unusable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(model_module, "PACKAGED_MODEL", "absent.npz")
    with caplog.at_level(logging.WARNING, logger="auralink.aic.model"):
        assert isinstance(default_rate_model(), AnalyticRateModel)
        assert isinstance(HintEngine().model, AnalyticRateModel)
    assert "analytic placeholder" in caplog.text


# --- the maths --------------------------------------------------------------------------------------------------

MODEL = load_rate_model()
frames = st.builds(
    FrameStats,
    width=st.sampled_from([176, 320, 640, 1280]),
    height=st.sampled_from([144, 240, 480, 720]),
    fps=st.sampled_from([15.0, 30.0]),
    spatial_information=st.floats(0.0, 200.0),
    temporal_information=st.floats(0.0, 100.0),
)
scales = st.sampled_from([1.0, 0.75, 0.5, 0.25])


@given(frames, st.floats(20.0, 45.0), scales, st.sampled_from([1.0, 0.5]))
def test_required_bitrate_inverts_predicted_quality(
    frame: FrameStats, psnr: float, scale: float, fraction: float
) -> None:
    fps = frame.fps * fraction
    needed = MODEL.required_bitrate(frame, psnr, scale, fps)
    if math.isfinite(needed) and needed > 1.0:
        assert MODEL.predicted_quality(frame, needed, scale, fps) == pytest.approx(psnr, abs=1e-6)
    else:
        assert MODEL.predicted_quality(frame, 1e11, scale, fps) <= psnr + 1e-6


@given(frames, scales, st.floats(10_000, 5_000_000), st.floats(1.01, 4.0))
def test_more_bits_never_lower_the_prediction(frame: FrameStats, scale: float, bitrate: float, factor: float) -> None:
    assert MODEL.predicted_quality(frame, bitrate * factor, scale, frame.fps) >= MODEL.predicted_quality(
        frame, bitrate, scale, frame.fps
    )


def test_harder_content_never_needs_fewer_bits_from_the_packaged_model() -> None:
    sports = FrameStats(width=640, height=480, fps=30.0, spatial_information=80.0, temporal_information=40.0)
    target = MODEL.quality_targets[Mode.ADAPTIVE]
    assert MODEL.required_bitrate(sports, target, 1.0, 30.0) >= MODEL.required_bitrate(TALKING_HEAD, target, 1.0, 30.0)
    # Sending half the frames costs a clip with motion more than a still one (the hold term grows with TI).
    assert MODEL.predicted_quality(sports, 1e6, 1.0, 15.0) < MODEL.predicted_quality(TALKING_HEAD, 1e6, 1.0, 15.0)


# The PSNR-Y weights of the first trained model (docs/concepts/aic.md): coding error grows with SI and TI.
PSNR_MODEL = TrainedRateModel(
    codec=(-1.564, -0.714, -0.188, 0.452, 0.768, 0.108),
    resample=(-0.456, 1.124, 0.839),
    hold=(1.265, 1.633),
    quality_targets={Mode.AGGRESSIVE: 32.0, Mode.ADAPTIVE: 35.0, Mode.CONSERVATIVE: 38.0},
    confidence=0.714,
    provenance="{}",
    metric="psnr_y_db",
)


def test_a_psnr_model_prices_harder_content_higher() -> None:
    sports = FrameStats(width=640, height=480, fps=30.0, spatial_information=80.0, temporal_information=40.0)
    assert PSNR_MODEL.required_bitrate(sports, 35.0, 1.0, 30.0) > 2 * PSNR_MODEL.required_bitrate(
        TALKING_HEAD, 35.0, 1.0, 30.0
    )
    bitrate = PSNR_MODEL.required_bitrate(TALKING_HEAD, 35.0, 1.0, 30.0)
    assert PSNR_MODEL.predicted_quality(TALKING_HEAD, bitrate, 1.0, 30.0) == pytest.approx(35.0)


def test_trained_engine_hits_its_target_on_a_good_network() -> None:
    for mode in Mode:
        hint = HintEngine(mode, model=MODEL).hint(TALKING_HEAD, GOOD_NETWORK, 0.0)
        assert hint.predicted_quality == pytest.approx(MODEL.quality_targets[mode], abs=0.05)
        assert hint.confidence <= MODEL.confidence


# --- training ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["psnr_y_db", "vmaf"])
def test_training_smoke_run_encodes_one_config(tmp_path: Path, metric: str) -> None:
    pytest.importorskip("aiortc")
    pytest.importorskip("skvideo")
    if metric == "vmaf":
        pytest.importorskip("imageio_ffmpeg", reason="VMAF needs the aic-bench extra (imageio-ffmpeg)")
    from benchmarks.aic import train  # noqa: PLC0415 - needs aiortc and scikit-video, skipped above

    assert train.main(["--smoke", "--metric", metric, "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / train.SWEEP_FILE).read_text())
    (point,) = data["points"]
    assert point["sequence"] == "carphone[0:40]"
    assert (point["width"], point["height"]) == (176, 144)
    # CBR at 40 kbps, far below aiortc's 250 kbps floor: within the encoder's over/undershoot.
    assert 0.5 * point["target_bps"] < point["bitrate_bps"] < 1.5 * point["target_bps"]
    assert 25.0 < point["psnr_y"] < 45.0
    assert 0.7 < point["ssim_y"] <= 1.0
    if metric == "vmaf":
        assert 40.0 < point["vmaf"] < 100.0
        (side,) = data["side"]
        assert 0.0 < side["hold_vmaf_half"] < 100.0
    else:
        assert point["vmaf"] is None
