"""The per-peer input of route selection: candidate paths, what was observed on each, the current path.

Theory of operation
-------------------
A :class:`PathContext` is the ``ctx`` of ``PathSelector.select(ctx, now)``. There is one per peer
connection. The adapter that owns the connection's socket layer feeds it, and a selector reads it
and records its choice in it:

* **Candidates.** :meth:`PathContext.add_path` adds a path (optionally with a :class:`PathPrior`
  from the node store, and the relay's reputation); :meth:`PathContext.remove_path` drops one (an
  address went away). :meth:`PathContext.set_reputation` updates a relay's reputation or bans it.
* **Observations**, in the vocabulary of QUIC loss detection (RFC 9002):
  :meth:`PathContext.sent` (traffic or a probe left on a path), :meth:`PathContext.observe` (one
  answer, with its RTT sample, or one loss) and :meth:`PathContext.observe_packets` (a batch of
  acknowledged and lost packets). They go to the path's :class:`PathModel`.
* **Choice and history.** :attr:`PathContext.current` is the path traffic uses now.
  :meth:`PathContext.switch` changes it and appends a :class:`PathSwitch` to a bounded
  :attr:`PathContext.history`. Selectors call it; an adapter calls it once, through
  :meth:`PathContext.start`, for the path the connection was dialled on.

Everything here is plain data in memory; time comes in as ``now`` (monotonic seconds). Selectors
keep their own small policy state (a pending challenger, a probe budget), so the context holds
what was *seen* and *chosen*, and a selector holds what it *intends*.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from auralink.errors import LocalProtocolError
from auralink_node.routing.model import (
    DEFAULT_MODEL_CONFIG,
    ModelConfig,
    PathEstimate,
    PathModel,
    PathPrior,
    canonical_path,
)

__all__ = ["HISTORY_SIZE", "PathContext", "PathSwitch", "Reason"]

HISTORY_SIZE = 32
"""Switches a context remembers by default."""


class Reason(enum.Enum):
    """Why a selector chose what it chose: a stable machine key (the value) for ``why --json``."""

    INITIAL = "initial"
    """The first choice for the connection (or the path it was dialled on)."""
    FAILOVER = "failover"
    """The current path went silent, so traffic moved to another path at once."""
    BETTER = "better"
    """Another path stayed better than the current one beyond the hysteresis margin for the dwell time."""
    REMOVED = "removed"
    """The current path was removed or its relay banned."""
    KEEP_BEST = "keep-best"
    """No switch: the current path is the best, or no other path is better by enough."""
    KEEP_PENDING = "keep-pending"
    """No switch yet: a better path is waiting out the dwell time (hysteresis)."""
    KEEP_NO_ALTERNATIVE = "keep-no-alternative"
    """No switch: the current path is silent, but no other path is known to work."""
    NO_PATH = "no-path"
    """No candidate paths at all."""

    @property
    def is_switch(self) -> bool:
        """Whether the reason goes with a change of path."""
        return self in (Reason.INITIAL, Reason.FAILOVER, Reason.BETTER, Reason.REMOVED)


@dataclass(frozen=True, slots=True)
class PathSwitch:
    """One change of the path a connection uses."""

    at: float
    """When (monotonic seconds)."""
    previous: str | None
    """The path used before, or ``None`` for the first choice."""
    path: str
    """The path used from then on."""
    reason: Reason
    """Why, as a machine key."""
    detail: str
    """Why, in words, with the numbers that decided it."""


class PathContext:
    """The candidate paths to one peer, their observations, and the current path."""

    __slots__ = ("_config", "_current", "_history", "_models")

    def __init__(self, *, config: ModelConfig = DEFAULT_MODEL_CONFIG, history: int = HISTORY_SIZE) -> None:
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise LocalProtocolError(f"history must be an int of at least 1, not {history!r}")
        self._config = config
        self._models: dict[str, PathModel] = {}
        self._current: str | None = None
        self._history: deque[PathSwitch] = deque(maxlen=history)

    # -- candidates -----------------------------------------------------------------------------

    def add_path(
        self, path: str, now: float, *, prior: PathPrior | None = None, reputation: float | None = None
    ) -> str:
        """Add a candidate path; return its canonical name. Adding a known path changes nothing."""
        name = canonical_path(path)
        if name not in self._models:
            self._models[name] = PathModel(name, now, config=self._config, prior=prior, reputation=reputation)
        return name

    def remove_path(self, path: str) -> None:
        """Drop a candidate. If it was the current path, the next ``select`` moves off it."""
        self._models.pop(canonical_path(path), None)

    def set_reputation(self, path: str, reputation: float | None, *, banned: bool = False) -> None:
        """Set a path's reputation (0..1, ``None`` for neutral) and whether it is banned."""
        self.model(path).set_reputation(reputation, banned=banned)

    @property
    def paths(self) -> tuple[str, ...]:
        """The candidate paths, in the order they were added."""
        return tuple(self._models)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and path in self._models

    def __iter__(self) -> Iterator[PathModel]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def model(self, path: str) -> PathModel:
        """The model of a candidate path; raises :class:`LocalProtocolError` for an unknown one."""
        model = self._models.get(path)
        if model is None:
            model = self._models.get(canonical_path(path))
        if model is None:
            raise LocalProtocolError(f"{path!r} is not a candidate path; add_path() it first")
        return model

    def estimate(self, path: str, now: float) -> PathEstimate:
        """The estimates of one path at ``now``."""
        return self.model(path).estimate(now)

    def estimates(self, now: float) -> tuple[PathEstimate, ...]:
        """The estimates of every candidate at ``now``, in the order they were added."""
        return tuple(model.estimate(now) for model in self._models.values())

    # -- observations ---------------------------------------------------------------------------

    def sent(self, path: str, now: float, *, probe: bool = False) -> None:
        """Something the peer must answer went out on ``path`` (traffic, or a probe if ``probe``)."""
        self.model(path).sent(now, probe=probe)

    def observe(self, path: str, now: float, *, rtt: float | None = None, lost: bool = False) -> None:
        """One observation on ``path``: an answer (with its RTT in seconds, if known), or a loss."""
        model = self.model(path)
        if lost:
            if rtt is not None:
                raise LocalProtocolError("an observation is either an answer with an RTT or a loss, not both")
            model.count(now, lost=1)
            return
        model.heard(now, rtt)
        model.count(now, acked=1)

    def observe_packets(self, path: str, now: float, *, acked: int = 0, lost: int = 0) -> None:
        """A batch of QUIC packets on ``path`` was acknowledged or declared lost (RFC 9002 section 6)."""
        model = self.model(path)
        model.count(now, acked=acked, lost=lost)
        if acked:
            model.heard(now)

    # -- the choice -----------------------------------------------------------------------------

    @property
    def current(self) -> str | None:
        """The path traffic uses now, or ``None`` before the first choice."""
        return self._current

    @property
    def history(self) -> tuple[PathSwitch, ...]:
        """The most recent switches, oldest first."""
        return tuple(self._history)

    @property
    def last_switch(self) -> PathSwitch | None:
        """The most recent switch, or ``None``."""
        return self._history[-1] if self._history else None

    def start(self, path: str, now: float, detail: str = "the connection was established on this path") -> PathSwitch:
        """Record the path a connection starts on (reason ``initial``)."""
        return self.switch(path, now, Reason.INITIAL, detail)

    def switch(self, path: str, now: float, reason: Reason, detail: str) -> PathSwitch:
        """Make ``path`` the current path and remember why."""
        if not reason.is_switch:
            raise LocalProtocolError(f"{reason.value!r} is not a reason to switch paths")
        name = self.model(path).path
        change = PathSwitch(at=now, previous=self._current, path=name, reason=reason, detail=detail)
        self._current = name
        self._history.append(change)
        return change
