"""Encoder effort from CPU headroom: which libvpx ``cpu-used`` a sender can afford, from measured encode times.

Theory of operation
===================

libvpx's VP8 encoder trades speed for compression with ``cpu-used``. In realtime mode a negative
value pins the speed level to its absolute value; aiortc uses -6. Slower levels find better
predictions (speeds 0 to 3 use the rate-distortion mode decision): at the tuned-static anchor's
rates, ``cpu-used -2`` needs 8-16% fewer bits for the same VMAF than -6 on the evaluation clips,
and costs about three times the encode time (``benchmarks/aic/effort.py``, summarised in
``docs/benchmarks.md``). That gain comes from spending CPU the device has spare, not from the
content or the network: a small or still picture leaves a lot of it, a loaded machine none.

:class:`EffortGovernor` is a pure core. It is told how long each encode took and the interval
between frames sent (:meth:`~EffortGovernor.observe`), with ``now``, and says which level to use
(:attr:`~EffortGovernor.cpu_used`). Its rules, with ``budget = budget_fraction x frame interval``:

1. **Start** at :attr:`EffortPolicy.start`: by default the slowest level, so that a sender with
   headroom pays no keyframe to get there (rule 4 catches one without headroom within five
   frames); ``start=levels[0]`` climbs from aiortc's speed instead, one keyframe per step.
2. **Step slower one level** once ``window`` encodes at the current level are known and their 95th
   percentile, scaled by the measured relative cost of the next level
   (:attr:`EffortPolicy.relative_cost`), fits within the budget, and no cooldown is running.
3. **Step faster one level** when the 95th percentile of the last ``window`` encodes exceeds the
   budget (it no longer fits, though frames are not late yet); judged on an encode within budget,
   so that a run of slow encodes is left to rule 4 and goes to the fastest level in one change.
4. **Back to the fastest level at once** when the encoder runs late: the median of the last
   ``late_frames`` encodes exceeds the budget.

Rules 3 and 4 start a cooldown before the next step slower; each failed attempt doubles it (up to
``max_cooldown``), and a level held for a whole cooldown without trouble halves it back. The gap
between "predicted to fit" (rule 2) and "measured not to fit" (rule 3) is the hysteresis. The
window restarts at each change, and encodes that opened the codec (every level change re-creates
libvpx's context, which codes a keyframe) are not counted: they are slower for reasons that pass.

Every change of level costs a keyframe (PyAV cannot retune an open libvpx context), so changes are
few. That is why the default starts slow and verifies rather than climbing: on 4-5 s evaluation
clips, the two keyframes of a climb from -6 cost more bits than the slower levels saved
(``docs/benchmarks.md``). The price is that a sender without headroom codes up to ``late_frames``
frames over budget at the start of a call (while aiortc's first keyframe goes out anyway) before
it falls back to -6.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass

from auralink.errors import LocalProtocolError

__all__ = ["DEFAULT_EFFORT", "EffortGovernor", "EffortPolicy"]


@dataclass(frozen=True, slots=True)
class EffortPolicy:
    """How an :class:`EffortGovernor` chooses ``cpu-used``."""

    levels: tuple[int, ...] = (-6, -3, -2)
    """libvpx ``cpu-used`` values, fastest first (aiortc's -6 first)."""
    start: int = -2
    """The level coded with until encode times are known; one of :attr:`levels`."""
    relative_cost: tuple[float, ...] = (1.0, 3.5, 5.0)
    """Encode time of each level relative to the first, at the 95th percentile (measured: up to 3.2x and 4.5x)."""
    budget_fraction: float = 0.5
    """Share of the interval between sent frames the encoder may take (the rest is the sender's and the app's)."""
    window: int = 20
    """Encodes measured at a level before stepping slower, and over which the 95th percentile is taken."""
    late_frames: int = 5
    """Encodes whose median, over budget, means the encoder runs late."""
    cooldown: float = 4.0
    """Seconds after a step faster before the next step slower (doubled by each failed attempt)."""
    max_cooldown: float = 60.0
    """Longest cooldown, seconds."""

    def __post_init__(self) -> None:
        if not self.levels or len(self.levels) != len(self.relative_cost):
            raise LocalProtocolError("effort levels and relative_cost must be non-empty and of equal length")
        if any(not -16 <= level <= -1 for level in self.levels):
            raise LocalProtocolError(f"effort levels must be fixed VP8 realtime speeds, -16..-1, not {self.levels}")
        if self.start not in self.levels:
            raise LocalProtocolError(f"the start level {self.start} is not one of the levels {self.levels}")
        costs = self.relative_cost
        if any(not math.isfinite(c) or c <= 0 for c in costs) or any(b < a for a, b in itertools.pairwise(costs)):
            raise LocalProtocolError(f"relative_cost must be finite, positive and non-decreasing: {costs}")
        if not 0.0 < self.budget_fraction <= 1.0:
            raise LocalProtocolError(f"budget_fraction must lie in (0, 1], not {self.budget_fraction!r}")
        if self.window < 2 or not 1 <= self.late_frames <= self.window:
            raise LocalProtocolError(
                f"need window >= 2 and 1 <= late_frames <= window: {self.window}, {self.late_frames}"
            )
        if not 0.0 <= self.cooldown <= self.max_cooldown < math.inf:
            raise LocalProtocolError(f"need 0 <= cooldown <= max_cooldown < inf: {self.cooldown}, {self.max_cooldown}")


DEFAULT_EFFORT = EffortPolicy()
"""The policy :class:`~auralink.aic.controller.AICController` uses unless told otherwise."""


def _p95(values: deque[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


class EffortGovernor:
    """Chooses libvpx ``cpu-used`` from measured encode times; see the module docstring."""

    def __init__(self, policy: EffortPolicy = DEFAULT_EFFORT) -> None:
        self.policy = policy
        self._index = policy.levels.index(policy.start)
        self._times: deque[float] = deque(maxlen=policy.window)
        self._cooldown = policy.cooldown
        self._hold_until = -math.inf
        self._since: float | None = None
        self.changes = 0
        """Level changes so far (each costs the sender a keyframe)."""
        self.late = 0
        """Times the encoder ran late and the governor went back to the fastest level."""

    @property
    def cpu_used(self) -> int:
        """The libvpx ``cpu-used`` to code with now."""
        return self.policy.levels[self._index]

    def observe(self, encode_seconds: float, frame_interval: float, now: float, *, opened: bool = False) -> int:
        """One encode took ``encode_seconds`` with frames ``frame_interval`` seconds apart; the level to use next.

        ``opened`` marks an encode that (re)opened the codec: it is not counted.
        """
        for name, value in (("encode_seconds", encode_seconds), ("frame_interval", frame_interval), ("now", now)):
            if not math.isfinite(value):
                raise LocalProtocolError(f"{name} must be finite, not {value!r}")
        if encode_seconds < 0 or frame_interval <= 0:
            raise LocalProtocolError(
                f"need encode_seconds >= 0 and frame_interval > 0: {encode_seconds}, {frame_interval}"
            )
        if self._since is None:
            self._since = now
        if opened:
            return self.cpu_used
        policy = self.policy
        budget = policy.budget_fraction * frame_interval
        self._times.append(encode_seconds)
        recent = list(self._times)[-policy.late_frames :]
        if self._index > 0 and len(recent) == policy.late_frames and sorted(recent)[len(recent) // 2] > budget:
            self.late += 1
            self._move(0, now, failed=True)
        elif len(self._times) == policy.window:
            p95 = _p95(self._times)
            if self._index > 0 and p95 > budget and encode_seconds <= budget:
                self._move(self._index - 1, now, failed=True)
            elif self._index + 1 < len(policy.levels) and now >= self._hold_until:
                costs = policy.relative_cost
                if p95 * costs[self._index + 1] / costs[self._index] <= budget:
                    self._move(self._index + 1, now, failed=False)
        if self._index > 0 and self._since is not None and now - self._since >= self._cooldown:
            self._cooldown = max(policy.cooldown, self._cooldown / 2)  # held a slow level a whole cooldown
            self._since = now
        return self.cpu_used

    def _move(self, index: int, now: float, *, failed: bool) -> None:
        self._index = index
        self._times.clear()
        self._since = now
        self.changes += 1
        if failed:
            self._hold_until = now + self._cooldown
            self._cooldown = min(self.policy.max_cooldown, self._cooldown * 2)
