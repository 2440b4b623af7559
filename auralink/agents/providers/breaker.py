"""A circuit breaker per provider: stop calling a provider that keeps failing, and probe it after a cool-down.

Theory of operation
===================

A pure core in the shape of aiortc's ``rate.py``: no clock, no I/O; every method that depends on
time takes ``now`` (monotonic seconds). The router keeps one :class:`CircuitBreaker` per tenant
and provider and asks it before each call.

States (:class:`BreakerState`)::

    CLOSED --(failure_threshold consecutive failures)--> OPEN
    CLOSED --(a 429 with Retry-After)------------------> OPEN until then
    OPEN   --(now >= open_until)-----------------------> HALF_OPEN
    HALF_OPEN: one probe call at a time is allowed
        probe succeeds --> CLOSED (failure count and cool-down reset)
        probe fails    --> OPEN again, for twice the previous cool-down (at most max_cool_down)

*Failures* are what says a provider is unhealthy: 429s, 5xx, timeouts, connections refused or
broken, malformed answers, and an exhausted provider account. Any other answer, a 401 or a 400
included, shows the provider is up and counts as a success for the breaker (the router falls back
all the same). A call that ends without telling either way (cancelled by the caller) is
*abandoned*: it frees the half-open probe slot and changes nothing else.

*Retry-After.* A provider that says when to come back is believed: the circuit opens at once
until then (at most ``max_retry_after``), whatever the failure count, and then half-opens like
any other open circuit.

:meth:`CircuitBreaker.get_timer` gives the time at which the state will change by itself (the
end of the open period), for an adapter that wants to schedule a probe, or for a caller that
wants to say "retry in N seconds".
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from auralink.errors import LocalProtocolError

__all__ = ["BreakerPolicy", "BreakerState", "CircuitBreaker"]


class BreakerState(enum.Enum):
    """Where a breaker stands."""

    CLOSED = "closed"
    """Calls go through."""
    OPEN = "open"
    """Calls are refused until the cool-down ends."""
    HALF_OPEN = "half-open"
    """The cool-down ended; one probe call at a time goes through."""


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """How quickly a breaker opens, and for how long."""

    failure_threshold: int = 5
    """Consecutive failures that open the circuit."""
    cool_down: float = 30.0
    """Seconds the circuit stays open before the first probe."""
    max_cool_down: float = 300.0
    """The longest cool-down, however many probes failed in a row."""
    max_retry_after: float = 3600.0
    """The longest Retry-After believed (a provider cannot switch itself off for a day)."""

    def __post_init__(self) -> None:
        if isinstance(self.failure_threshold, bool) or self.failure_threshold < 1:
            raise LocalProtocolError(f"failure_threshold must be at least 1, not {self.failure_threshold!r}")
        for name in ("cool_down", "max_cool_down", "max_retry_after"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise LocalProtocolError(f"{name} must be a finite number of seconds, not {value!r}")
        if self.max_cool_down < self.cool_down:
            raise LocalProtocolError("max_cool_down must not be shorter than cool_down")


class CircuitBreaker:
    """The breaker of one provider; see the module docstring for the state machine."""

    __slots__ = ("_cool_down", "_failures", "_open_until", "_policy", "_probing")

    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self._policy = policy or BreakerPolicy()
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False
        self._cool_down = self._policy.cool_down

    def __repr__(self) -> str:
        return f"CircuitBreaker(failures={self._failures}, open_until={self._open_until!r})"

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def state(self, now: float) -> BreakerState:
        """The state at ``now``."""
        if self._open_until is None:
            return BreakerState.CLOSED
        return BreakerState.OPEN if now < self._open_until else BreakerState.HALF_OPEN

    def allow(self, now: float) -> bool:
        """May a call start now? In half-open state this takes the one probe slot.

        Every allowed call must end in exactly one of :meth:`on_success`, :meth:`on_failure` or
        :meth:`on_abandoned`.
        """
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._probing:
            return False
        self._probing = True
        return True

    def retry_after(self, now: float) -> float:
        """Seconds until a call may be allowed again (0 if one may start now)."""
        if self._open_until is None:
            return 0.0
        if now < self._open_until:
            return self._open_until - now
        return self._cool_down if self._probing else 0.0

    def get_timer(self) -> float | None:
        """When the open period ends by itself (None unless open)."""
        return self._open_until

    def on_success(self, now: float) -> None:
        """A call got an answer that shows the provider is up."""
        del now
        self._failures = 0
        self._open_until = None
        self._probing = False
        self._cool_down = self._policy.cool_down

    def on_failure(self, now: float, *, retry_after: float | None = None) -> None:
        """A call failed in a way that says the provider is unhealthy (or told us to wait ``retry_after``)."""
        policy = self._policy
        was_probe = self._probing
        self._probing = False
        self._failures += 1
        if was_probe:
            self._cool_down = min(self._cool_down * 2, policy.max_cool_down)
            self._open_until = now + self._cool_down
        elif self._failures >= policy.failure_threshold and self.state(now) is not BreakerState.OPEN:
            self._open_until = now + self._cool_down
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            until = now + min(retry_after, policy.max_retry_after)
            self._open_until = until if self._open_until is None else max(self._open_until, until)

    def on_abandoned(self, now: float) -> None:
        """A call ended without telling whether the provider is healthy; free the probe slot."""
        del now
        self._probing = False
