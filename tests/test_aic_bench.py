"""AIC's benchmark helpers: the train/evaluation split, curve interpolation, BD-rate and the VMAF scorer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("aiortc")
pytest.importorskip("scipy")

from benchmarks.aic import evaluate, quality, sweep, train


def test_training_reads_only_carphone_and_stills(monkeypatch: pytest.MonkeyPatch) -> None:
    clips: list[str] = []
    stills: list[tuple[Any, ...]] = []

    def read_clip(path: Path, *, limit: int | None = None) -> tuple[list[np.ndarray], float]:
        clips.append(path.name)
        return [np.full((144, 176, 3), 100, np.uint8)] * 120, 30.0

    monkeypatch.setattr(sweep, "read_clip", read_clip)

    def still_sequences(*args: Any, **kwargs: Any) -> list[sweep.SourceSequence]:
        stills.append(args)
        return []

    monkeypatch.setattr(sweep, "still_sequences", still_sequences)
    train.sources(6)
    assert clips == ["carphone_pristine.mp4"]
    assert stills == [()]  # the default scikit-image stills
    held_out = {clip.file for clip in evaluate.CLIPS if clip.held_out}
    assert held_out == {"bikes.mp4", "bigbuckbunny.mp4", "Megamind.avi", "vtest.avi"}
    assert not held_out & set(clips)
    assert {clip.file for clip in evaluate.CLIPS if not clip.held_out} == {"carphone_pristine.mp4"}


def test_upper_hull_keeps_a_monotone_curve() -> None:
    rates, qualities = quality.upper_hull([400, 100, 200, 300, 300], [90, 70, 80, 79, 85])
    assert rates == [100, 200, 300, 400]
    assert qualities == [70, 80, 85, 90]


def test_rate_at_quality_interpolates_and_never_extrapolates() -> None:
    rates, qualities = [100.0, 200.0, 400.0, 800.0], [70.0, 80.0, 90.0, 95.0]
    assert quality.rate_at_quality(rates, qualities, 80.0) == pytest.approx(200.0)
    between = quality.rate_at_quality(rates, qualities, 85.0)
    assert between is not None
    assert 200.0 < between < 400.0
    assert quality.rate_at_quality(rates, qualities, 96.0) is None
    assert quality.quality_at_rate(rates, qualities, 400.0) == pytest.approx(90.0)
    assert quality.quality_at_rate(rates, qualities, 50.0) is None


def test_bd_rate_of_a_curve_that_needs_half_the_bits_is_minus_fifty_percent() -> None:
    pytest.importorskip("bjontegaard")
    rates, qualities = [100.0, 200.0, 400.0, 800.0, 1600.0], [60.0, 72.0, 82.0, 90.0, 95.0]
    halved = [rate / 2 for rate in rates]
    result = quality.bd_rate(rates, qualities, halved, qualities)
    assert result == pytest.approx(-50.0, abs=0.01)
    assert quality.bd_rate(rates[:3], qualities[:3], halved[:3], qualities[:3]) is None  # fewer than 4 points


def test_vmaf_of_a_frame_against_itself_is_high_and_of_grey_is_low(tmp_path: Path) -> None:
    pytest.importorskip("imageio_ffmpeg", reason="VMAF needs the aic-bench extra (imageio-ffmpeg)")
    rng = np.random.default_rng(1)
    y = np.kron(rng.integers(16, 235, (18, 22)), np.ones((8, 8))).astype(np.uint8)  # 144x176 blocks
    frame = y.tobytes() + bytes([128]) * (176 * 144 // 2)
    grey = bytes([128]) * (176 * 144 * 3 // 2)
    reference, same, flat = tmp_path / "ref.yuv", tmp_path / "same.yuv", tmp_path / "grey.yuv"
    reference.write_bytes(frame * 3)
    same.write_bytes(frame * 3)
    flat.write_bytes(grey * 3)
    identical = quality.score(same, reference, 176, 144, 30.0)
    assert len(identical.vmaf) == 3
    assert identical.vmaf_mean > 95.0
    assert identical.psnr_y_mean == pytest.approx(60.0)  # libvmaf caps identical frames at 60 dB
    assert identical.ssim_mean == pytest.approx(1.0)
    assert quality.score(flat, reference, 176, 144, 30.0).vmaf_mean < 20.0
