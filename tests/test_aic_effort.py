"""AIC's encoder effort: cpu-used chosen from injected encode times, with hysteresis, a budget and a fallback."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from auralink.aic.effort import EffortGovernor, EffortPolicy
from auralink.errors import LocalProtocolError

INTERVAL = 0.04  # 25 fps: the budget is 20 ms at the default budget fraction
MS = 0.001


class Feeder:
    """Feeds a governor one encode per frame on a media clock that steps by the frame interval."""

    def __init__(self, governor: EffortGovernor) -> None:
        self.governor = governor
        self.now = 0.0

    def feed(self, seconds: float, count: int = 1, *, opened: bool = False) -> int:
        level = self.governor.cpu_used
        for _ in range(count):
            level = self.governor.observe(seconds, INTERVAL, self.now, opened=opened)
            self.now += INTERVAL
        return level


CLIMB = EffortPolicy(start=-6)


def test_starts_slow_by_default_or_at_the_policys_start() -> None:
    assert EffortGovernor().cpu_used == -2
    assert EffortGovernor(CLIMB).cpu_used == -6


def test_headroom_keeps_the_slow_start() -> None:
    governor = EffortGovernor()
    assert Feeder(governor).feed(9 * MS, 500) == -2
    assert (governor.changes, governor.late) == (0, 0)


def test_no_headroom_at_the_start_falls_back_within_five_frames() -> None:
    governor = EffortGovernor()
    feeder = Feeder(governor)
    feeder.feed(80 * MS, opened=True)  # the first encode opens the codec: not counted
    assert feeder.feed(30 * MS, 4) == -2
    assert feeder.feed(30 * MS) == -6
    assert feeder.feed(6 * MS, 500) == -6  # 6 ms x 3.5 does not fit 20 ms: stays fast
    assert (governor.changes, governor.late) == (1, 1)


def test_headroom_steps_slower_one_level_per_window() -> None:
    governor = EffortGovernor(CLIMB)
    feeder = Feeder(governor)
    assert feeder.feed(2 * MS, 19) == -6  # not before a whole window is measured
    assert feeder.feed(2 * MS) == -3  # p95 2 ms x 3.5 fits 20 ms
    assert feeder.feed(6 * MS, 19) == -3
    assert feeder.feed(6 * MS) == -2  # 6 ms x 5 / 3.5 = 8.6 ms fits
    assert feeder.feed(9 * MS, 200) == -2  # the slowest level: nowhere further to go
    assert governor.changes == 2
    assert governor.late == 0


def test_no_step_slower_when_the_next_level_is_predicted_not_to_fit() -> None:
    feeder = Feeder(EffortGovernor(CLIMB))
    assert feeder.feed(6 * MS, 100) == -6  # 6 ms x 3.5 = 21 ms > 20 ms


def climbed(governor: EffortGovernor) -> Feeder:
    feeder = Feeder(governor)
    feeder.feed(MS, 40)
    assert governor.cpu_used == -2
    assert governor.changes == (2 if governor.policy.start == -6 else 0)
    return feeder


def test_running_late_goes_back_to_the_fastest_level_at_once() -> None:
    governor = EffortGovernor(CLIMB)
    feeder = climbed(governor)  # just stepped to -2: nothing measured there yet
    assert feeder.feed(30 * MS, 4) == -2  # four encodes are not yet a trend
    assert feeder.feed(30 * MS) == -6  # the median of five is over the 20 ms budget
    assert (governor.changes, governor.late) == (3, 1)


def test_occasional_spikes_over_budget_step_back_one_level() -> None:
    governor = EffortGovernor()
    feeder = climbed(governor)
    feeder.feed(8 * MS, 9)
    feeder.feed(25 * MS)
    feeder.feed(8 * MS, 9)
    assert governor.cpu_used == -2  # one spike in 20 is within the 95th percentile
    assert feeder.feed(25 * MS) == -2
    assert feeder.feed(8 * MS) == -3  # two are not
    assert (governor.changes, governor.late) == (1, 0)


def test_a_sudden_overload_goes_to_the_fastest_level_in_one_change() -> None:
    governor = EffortGovernor()
    feeder = climbed(governor)
    assert feeder.feed(30 * MS, 3) == -6
    assert (governor.changes, governor.late) == (1, 1)


def test_a_failed_level_is_retried_only_after_a_cooldown_that_doubles() -> None:
    policy = EffortPolicy(start=-6, cooldown=4.0)
    governor = EffortGovernor(policy)
    feeder = climbed(governor)
    feeder.feed(30 * MS, 5)
    assert governor.cpu_used == -6
    failed_at = feeder.now - INTERVAL
    while governor.cpu_used == -6:  # cheap again: steps slower once the 4 s cooldown is over
        feeder.feed(MS)
        assert feeder.now < failed_at + 10
    assert feeder.now - INTERVAL >= failed_at + 4.0
    feeder.feed(MS, 20)
    assert governor.cpu_used == -2
    feeder.feed(30 * MS, 5)  # fails again: the next cooldown is 8 s
    failed_again = feeder.now - INTERVAL
    while governor.cpu_used == -6:
        feeder.feed(MS)
        assert feeder.now < failed_again + 20
    assert feeder.now - INTERVAL >= failed_again + 8.0


def test_encodes_that_open_the_codec_are_not_counted() -> None:
    governor = EffortGovernor()
    feeder = climbed(governor)
    assert feeder.feed(80 * MS, 10, opened=True) == -2  # keyframes of a fresh context: slow, but they pass
    assert governor.late == 0


def test_budget_scales_with_the_interval_between_sent_frames() -> None:
    governor = EffortGovernor(CLIMB)
    for index in range(20):  # 8 ms frames at 12.5 fps (80 ms apart): 8 x 3.5 = 28 ms fits a 40 ms budget
        governor.observe(8 * MS, 0.08, index * 0.08)
    assert governor.cpu_used == -3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"levels": ()},
        {"levels": (-6, -2), "relative_cost": (1.0,)},
        {"levels": (-6, 0), "relative_cost": (1.0, 2.0)},  # 0 is libvpx's automatic speed, not a level
        {"levels": (-6, -2), "relative_cost": (1.0, 0.5)},
        {"levels": (-6, -2), "relative_cost": (1.0, math.nan)},
        {"start": -4},
        {"budget_fraction": 0.0},
        {"budget_fraction": 1.5},
        {"window": 1},
        {"late_frames": 30},
        {"cooldown": 100.0},
        {"max_cooldown": math.inf},
    ],
)
def test_bad_policies_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        EffortPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "interval", "now"),
    [(math.nan, 0.04, 0.0), (-0.001, 0.04, 0.0), (0.001, 0.0, 0.0), (0.001, math.inf, 0.0), (0.001, 0.04, math.nan)],
)
def test_bad_observations_are_rejected(seconds: float, interval: float, now: float) -> None:
    with pytest.raises(LocalProtocolError):
        EffortGovernor().observe(seconds, interval, now)


# --- the controller drives a real aiortc encoder ---------------------------------------------------------------

aiortc = pytest.importorskip("aiortc")

from aiortc.codecs import vpx  # noqa: E402

from auralink.aic import HintEngine, Mode, NetworkStats  # noqa: E402
from auralink.aic.controller import AICController, ControlledVp8Encoder  # noqa: E402
from tests.test_aic_controller import Clock, video_frame  # noqa: E402

NETWORK = NetworkStats(rtt_s=0.05, loss=0.0, jitter_s=0.0, bandwidth_bps=3_000_000)


class EncodeTimer:
    """A timer read twice per encode (before and after) that makes each encode take ``cost`` seconds."""

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.now = 0.0
        self.after = False

    def __call__(self) -> float:
        if self.after:
            self.now += self.cost
        self.after = not self.after
        return self.now


def run(controller: AICController, encoder: vpx.Vp8Encoder, start: int, count: int) -> None:
    """What aiortc's sender does: the track's frame, then the encoder."""
    for index in range(start, start + count):
        out = controller.process(video_frame(index))  # 30 fps: a 16.7 ms budget
        if out is not None:
            encoder.encode(out)


def test_controller_codes_slow_with_headroom_and_falls_back_when_late() -> None:
    timer = EncodeTimer(1 * MS)
    encoder = vpx.Vp8Encoder()
    controller = AICController(HintEngine(Mode.ADAPTIVE), clock=Clock(), network=NETWORK, encode_timer=timer)
    controller.attach(SimpleNamespace(_RTCRtpSender__encoder=encoder))
    run(controller, encoder, 0, 50)
    assert isinstance(encoder, ControlledVp8Encoder)
    metrics = controller.metrics()
    assert (metrics.cpu_used, metrics.effort_changes, metrics.encoder_late) == (-2, 0, 0)
    # merged over aiortc's options in each context the encoder opens (PyAV empties them once open)
    assert encoder.options == {"noise-sensitivity": "0", "rc_init_occupancy": "{bufsize}", "cpu-used": "-2"}
    opened = encoder.codec
    timer.cost = 25 * MS  # the machine got busy
    run(controller, encoder, 50, 6)
    metrics = controller.metrics()
    assert (metrics.cpu_used, metrics.encoder_late) == (-6, 1)
    assert encoder.options["cpu-used"] == "-6"
    assert encoder.codec is not opened  # re-created at the fast level


def test_controller_climbs_from_aiortcs_speed_with_headroom() -> None:
    timer = EncodeTimer(1 * MS)
    encoder = vpx.Vp8Encoder()
    controller = AICController(
        HintEngine(Mode.ADAPTIVE), clock=Clock(), network=NETWORK, effort=CLIMB, encode_timer=timer
    )
    controller.attach(SimpleNamespace(_RTCRtpSender__encoder=encoder))
    run(controller, encoder, 0, 50)
    assert isinstance(encoder, ControlledVp8Encoder)
    metrics = controller.metrics()
    assert (metrics.cpu_used, metrics.effort_changes, metrics.encoder_late) == (-2, 2, 0)
    assert encoder.options["cpu-used"] == "-2"


def test_without_an_effort_policy_aiortcs_speed_stays() -> None:
    encoder = vpx.Vp8Encoder()
    controller = AICController(
        HintEngine(Mode.ADAPTIVE), clock=Clock(), network=NETWORK, effort=None, encode_timer=EncodeTimer(MS)
    )
    controller.attach(SimpleNamespace(_RTCRtpSender__encoder=encoder))
    run(controller, encoder, 0, 50)
    metrics = controller.metrics()
    assert (metrics.cpu_used, metrics.effort_changes) == (None, 0)
    assert isinstance(encoder, ControlledVp8Encoder)
    assert "cpu-used" not in encoder.options  # aiortc's own -6 applies


def test_cpu_used_reaches_libvpx() -> None:
    from auralink.aic.controller import TUNED_VP8_OPTIONS, adopt_encoder  # noqa: PLC0415
    from tests.test_aic_tuning import bitstream  # noqa: PLC0415

    tuned = bitstream(adopt_encoder(vpx.Vp8Encoder(), options=TUNED_VP8_OPTIONS))
    fast = bitstream(adopt_encoder(vpx.Vp8Encoder(), options={**TUNED_VP8_OPTIONS, "cpu-used": "-6"}))
    slow = bitstream(adopt_encoder(vpx.Vp8Encoder(), options={**TUNED_VP8_OPTIONS, "cpu-used": "-2"}))
    assert fast == tuned  # aiortc's own speed, set explicitly, codes the same
    assert slow != fast
