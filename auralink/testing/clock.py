"""A clock that moves only when a test tells it to.

Theory of operation
===================

AuraLink cores take time as a ``now: float`` argument (monotonic seconds), and adapters read it
from a ``clock=`` callable that defaults to ``time.monotonic``. A test passes a
:class:`FakeClock` instead: calling it returns :attr:`FakeClock.now`, which changes only through
:meth:`FakeClock.advance` and :meth:`FakeClock.set`. Time never goes backwards, and never becomes
NaN or infinite; asking for that is a bug in the test and raises
:class:`~auralink.errors.LocalProtocolError`.

This is ``trio.testing.MockClock`` without autojump: a test that waits for a timer moves the
clock to the core's ``get_timer()`` deadline itself, so every run of a test is the same run.
"""

from __future__ import annotations

import math

from auralink.errors import LocalProtocolError

__all__ = ["FakeClock"]


def _check_finite(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise LocalProtocolError(f"{what} must be a finite number, not {value!r}")
    return value


class FakeClock:
    """A monotonic clock in seconds that only moves when told to; pass it as ``clock=``."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = _check_finite(start, "start")

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"

    def __call__(self) -> float:
        """Return the current time, like ``time.monotonic()``."""
        return self._now

    @property
    def now(self) -> float:
        """The current time in seconds."""
        return self._now

    def advance(self, dt: float) -> float:
        """Move time forward by ``dt`` seconds (``dt >= 0``) and return the new time."""
        dt = _check_finite(dt, "dt")
        if dt < 0:
            raise LocalProtocolError(f"cannot advance a clock by a negative amount ({dt!r} s)")
        self._now += dt
        return self._now

    def set(self, t: float) -> float:
        """Jump to time ``t``, which must not lie before the current time, and return it."""
        t = _check_finite(t, "t")
        if t < self._now:
            raise LocalProtocolError(f"a monotonic clock cannot go back from {self._now!r} to {t!r}")
        self._now = t
        return self._now
