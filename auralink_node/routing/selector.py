"""Route selection: which path a connection's traffic takes, and why; two pluggable selectors.

Theory of operation
===================

A selector implements :class:`PathSelector`: ``select(ctx, now) -> Decision``, where ``ctx`` is
the peer's :class:`~auralink_node.routing.context.PathContext` (candidate paths, what was observed
on each, the current path and the switch history). It is a pure core: no clock, no sockets, and
its only randomness is the :class:`random.Random` it is given. An adapter calls ``select`` when a
:class:`Decision`'s ``next_timer`` is due (one timer, as aioquic's ``get_timer``), sends one probe
on each path in ``Decision.probes`` (the selector has already noted them as sent in ``ctx``), and
routes datagrams on ``Decision.path``. Use one selector per peer: it keeps its hysteresis timers and
probe budget.

Every :class:`Decision` explains itself: the chosen path, every candidate with its
:class:`PathScore` (predicted RTT, loss, jitter, effective latency, risk, bias, total cost), whether
it switched, a machine key (:class:`~auralink_node.routing.context.Reason`) and a sentence with the
numbers, and the last switch. :meth:`Decision.to_dict` is what ``auralink-node why TARGET --json``
prints.

BiasedRttSelector (the iroh-like baseline)
------------------------------------------
What iroh's magicsock (before multipath) and Tailscale's ``betterAddr`` do, with their constants
as defaults. The score is the *last* RTT sample of a path, multiplied by ``relay_bias`` for relays
(direct is preferred unless a relay is much faster) and by ``ipv6_bias`` for direct IPv6 (iroh
prefers IPv6 within 10%). A path is *trusted* for ``trust_duration`` (6.5 s,
``TRUST_UDP_ADDR_DURATION``) after it was last heard; when the current path's trust runs out, the
selector fails over to the best other path heard within the trust duration or, failing that, from a
direct path to the best relay (iroh's "mixed" mode sends through the relay until a pong arrives),
and probes every path (at most each ``ping_interval``) until one answers. Otherwise it switches
only to a path whose score is ``switch_margin`` better for ``dwell`` seconds. It probes the current
path every ``heartbeat_interval`` (5 s) when it has not heard from it, every other path every
``upgrade_interval`` (60 s, ``UPGRADE_INTERVAL``). It ignores loss, jitter and reputation, except
that a banned relay is never used.

LearnedSelector (the default)
-----------------------------
Built on the online per-path model of :mod:`auralink_node.routing.model`.

* **Cost.** For each path, in seconds: the predicted effective latency
  ``rtt + loss / (1 - loss) * (rtt + 4 * jitter)`` (the time to get a packet acknowledged, with
  retransmissions), plus a *risk* term ``hazard * silence_timeout * outage_cost`` (the expected
  seconds of outage per second of use, priced at ``outage_cost``; the hazard is learned from the
  path's outages and starts from the relay's reputation), plus ``relay_cost`` for relays (a mild
  preference for direct paths, which spare the relay and leak less metadata). The uncertainty of
  the cost comes from the RTT filter's variance, which grows while a path is not measured, and the
  loss posterior.
* **Only live paths carry traffic.** A path must have answered and have no overdue answer
  (:class:`~auralink_node.routing.model.PathState` ``UP``) to be chosen on purpose.
* **Fast failover.** When the current path goes silent (an answer overdue by 3 PTOs, clamped to
  0.5..1.5 s) traffic moves at once, without hysteresis, to the cheapest path heard *after* the
  current one went quiet: such a path is known to work now. A failure of the peer's access link
  takes several paths at once, so the cheapest path on paper is not good enough. If no such path is
  known, the selector probes ``failover_probes`` alternatives per round (every
  ``failover_recheck``), most likely survivors first, and moves to the first that answers; only
  after ``failover_wait`` without an answer does it move to an unconfirmed path (never to one probed
  in this failover that missed its PTO, nor to one that has never answered at all).
  ``silence_max + failover_wait`` = 1.9 s keeps the move inside the 2 s goal. If the new path
  does not answer either, it moves again.
* **Shared fate, learned.** Each failover records which probed paths answered while the failed one
  was silent. :meth:`LearnedSelector.survival` is a Beta estimate per (failed, other) pair, shrunk
  towards ``other``'s survival over every failure, and orders the probes of the next failover: after
  one Wi-Fi outage, the LTE path is probed first.
* **Hysteresis.** A challenger must beat the current cost by ``switch_margin`` (relative),
  ``switch_floor`` (absolute) and ``confidence`` standard deviations of the difference, for
  ``dwell`` seconds, and must have been heard within ``confirm_window`` (it is probed to confirm).
  Only the cheapest challenger may take over, so that traffic does not step through a lesser path
  that happened to be confirmed first. Returning to a path traffic recently *chose* to leave takes
  longer: as in BGP route flap damping (RFC 2439), each such move adds a penalty that halves every
  ``damping_half_life``, and the dwell doubles per unit of penalty (up to ``max_dwell``).
* **Bounded exploration.** Every probe spends a token from a bucket of ``probe_burst`` tokens
  refilled at ``probe_budget_per_hour``: in any window of T seconds the selector asks for at most
  ``probe_burst + T * probe_budget_per_hour / 3600`` probes (:meth:`LearnedConfig.probe_limit`).
  The last ``failover_reserve`` tokens are for failovers only. In order of priority the tokens go
  to: validating alternatives during a failover; confirming the challenger; keeping the best
  fallback fresh (heard within ``fallback_refresh``); retrying silent and never-heard paths,
  cheapest first, with backoff (``recovery_min``, times ``recovery_growth`` per unanswered probe, up
  to ``recovery_max``; slowly for paths that could not beat the current one; at once when another
  path has just come back, since paths that failed together tend to recover together); and
  Thompson sampling: a cost is drawn for each live alternative from its posterior (normal, with the
  cost's uncertainty), and the one whose draw beats the current path by the margin is probed.
  Stale paths are uncertain, so they are drawn low more often: exploration goes where it could
  change the decision.

Both selectors return a candidate whenever one is not banned, even when none is known to work (the
adapter has to send somewhere); ``Decision.path`` is ``None`` (reason ``no-path``) only when every
candidate is banned or there are none, and then the adapter should stop sending.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from random import Random
from typing import Any, Protocol

from auralink.errors import LocalProtocolError
from auralink_node.routing.context import PathContext, PathSwitch, Reason
from auralink_node.routing.model import PathEstimate, PathKind, PathState

__all__ = [
    "BiasedRttConfig",
    "BiasedRttSelector",
    "Decision",
    "LearnedConfig",
    "LearnedSelector",
    "PathScore",
    "PathSelector",
]

MIN_TIMER_STEP = 0.001
"""The shortest time ahead a decision may ask to be called again, seconds (no busy loops)."""


def _finite(value: float, what: str, *, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LocalProtocolError(f"{what} must be a finite number, not {value!r}")
    if not low <= value <= high:
        raise LocalProtocolError(f"{what} must lie in [{low}, {high}], not {value!r}")
    return float(value)


def _check_config(config: object, names: Iterable[str], *, positive: bool = False) -> None:
    for name in names:
        value = _finite(getattr(config, name), f"{type(config).__name__}.{name}")
        if positive and value <= 0:
            raise LocalProtocolError(f"{type(config).__name__}.{name} must be positive")


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 3)


def _short(path: str) -> str:
    """A path name short enough for a sentence: relay AuraIDs are cut to 8 characters."""
    return f"relay:{path[6:14]}…" if path.startswith("relay:") else path


@dataclass(frozen=True, slots=True)
class PathScore:
    """How a selector rated one candidate path (seconds throughout; ``cost`` is what it minimises)."""

    path: str
    """The canonical path name."""
    kind: PathKind
    """``direct`` or ``relay``."""
    state: PathState
    """Whether the path can carry traffic (only ``up`` paths are chosen on purpose)."""
    rtt: float
    """The RTT the selector used: the model's prediction (learned) or the last sample (baseline)."""
    loss: float
    """Predicted loss rate, 0..1."""
    jitter: float
    """Predicted jitter."""
    latency: float
    """Predicted effective latency: the time to get a packet acknowledged, retransmissions included."""
    risk: float
    """Cost of the expected outages on this path."""
    bias: float
    """Preference added to (or, negative, taken from) the cost: relays, IPv6."""
    cost: float
    """The number compared: lower is better; always finite."""
    uncertainty: float
    """Standard deviation of ``cost`` (0 for selectors that do not model it)."""
    heard_ago: float | None
    """Seconds since the path last answered, or ``None`` if never."""
    samples: int
    """RTT samples this session."""
    reputation: float | None
    """The relay's reputation, if known."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, times in milliseconds."""
        return {
            "path": self.path,
            "kind": self.kind,
            "state": self.state.value,
            "rtt_ms": _ms(self.rtt),
            "loss": round(self.loss, 6),
            "jitter_ms": _ms(self.jitter),
            "latency_ms": _ms(self.latency),
            "risk_ms": _ms(self.risk),
            "bias_ms": _ms(self.bias),
            "cost_ms": _ms(self.cost),
            "uncertainty_ms": _ms(self.uncertainty),
            "heard_ago_s": None if self.heard_ago is None else round(self.heard_ago, 3),
            "samples": self.samples,
            "reputation": self.reputation,
        }

    def describe(self) -> str:
        """One line for explanations."""
        return (
            f"{_short(self.path)} {self.cost * 1000:.1f} ms (rtt {self.rtt * 1000:.1f} ms, "
            f"loss {self.loss:.1%}, jitter {self.jitter * 1000:.1f} ms)"
        )


def _switch_dict(change: PathSwitch | None) -> dict[str, Any] | None:
    if change is None:
        return None
    return {
        "at": change.at,
        "from": change.previous,
        "to": change.path,
        "reason": change.reason.value,
        "detail": change.detail,
    }


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one ``select``: what to use, what to probe, when to ask again, and why."""

    at: float
    """When the decision was made (monotonic seconds)."""
    selector: str
    """Which selector made it (``learned``, ``biased-rtt``)."""
    path: str | None
    """The path traffic should use; ``None`` only if no candidate is left that is not banned."""
    previous: str | None
    """The current path before this decision."""
    switched: bool
    """Whether ``path`` differs from ``previous`` (a switch was recorded in the context)."""
    reason: Reason
    """Why, as a machine key."""
    explanation: str
    """Why, in words, with the numbers that decided it."""
    candidates: tuple[PathScore, ...]
    """Every candidate with its score, usable ones first, cheapest first."""
    probes: tuple[str, ...]
    """Paths to send one probe on now (already noted as sent in the context)."""
    next_timer: float
    """Call ``select`` again no later than this (monotonic seconds)."""
    last_switch: PathSwitch | None
    """The most recent switch, this one included."""

    def score(self, path: str) -> PathScore | None:
        """The score of ``path``, or ``None`` if it is not a candidate."""
        for candidate in self.candidates:
            if candidate.path == path:
                return candidate
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what ``auralink-node why TARGET --json`` prints."""
        return {
            "at": self.at,
            "selector": self.selector,
            "path": self.path,
            "previous": self.previous,
            "switched": self.switched,
            "reason": self.reason.value,
            "explanation": self.explanation,
            "candidates": [candidate.to_dict() for candidate in self.candidates],
            "probes": list(self.probes),
            "next_timer": self.next_timer,
            "last_switch": _switch_dict(self.last_switch),
        }


class PathSelector(Protocol):
    """A route selector: pure, pluggable, one instance per peer."""

    @property
    def name(self) -> str:
        """A short name for logs and explanations."""
        ...

    def select(self, ctx: PathContext, now: float) -> Decision:
        """Choose the path for ``ctx``'s peer at ``now``, record a switch in ``ctx``, and explain."""
        ...


def _ordered(scores: Iterable[PathScore]) -> tuple[PathScore, ...]:
    return tuple(sorted(scores, key=lambda s: (s.state is not PathState.UP, s.cost, s.path)))


def _cheapest(scores: Iterable[PathScore]) -> PathScore | None:
    best: PathScore | None = None
    for score in scores:
        if best is None or (score.cost, score.path) < (best.cost, best.path):
            best = score
    return best


def _fallback_choice(scores: dict[str, PathScore]) -> PathScore | None:
    """Something to send on when nothing is known to work: the cheapest path not silent, else not banned."""
    usable = [s for s in scores.values() if s.state in (PathState.UP, PathState.UNKNOWN)]
    return _cheapest(usable) or _cheapest(s for s in scores.values() if s.state is not PathState.BANNED)


def _decide(
    ctx: PathContext,
    now: float,
    *,
    selector: str,
    target: str | None,
    reason: Reason,
    explanation: str,
    scores: dict[str, PathScore],
    probes: list[str],
    next_timer: float,
) -> Decision:
    previous = ctx.current
    switched = target is not None and target != previous
    if switched and target is not None:
        ctx.switch(target, now, reason, explanation)
    elif reason.is_switch:  # nothing changed after all
        reason = Reason.KEEP_BEST
    for path in probes:
        ctx.sent(path, now, probe=True)
    return Decision(
        at=now,
        selector=selector,
        path=target,
        previous=previous,
        switched=switched,
        reason=reason,
        explanation=explanation,
        candidates=_ordered(scores.values()),
        probes=tuple(probes),
        next_timer=max(next_timer, now + MIN_TIMER_STEP),
        last_switch=ctx.last_switch,
    )


def _no_path(
    ctx: PathContext,
    now: float,
    selector: str,
    reevaluate: float,
    scores: dict[str, PathScore] | None = None,
) -> Decision:
    return _decide(
        ctx,
        now,
        selector=selector,
        target=None,
        reason=Reason.NO_PATH,
        explanation="every candidate path is banned" if scores else "no candidate paths",
        scores=scores or {},
        probes=[],
        next_timer=now + reevaluate,
    )


# ---------------------------------------------------------------------------------------------
# The iroh-like baseline


@dataclass(frozen=True, slots=True)
class BiasedRttConfig:
    """Knobs of :class:`BiasedRttSelector`; the defaults are iroh's and Tailscale's constants."""

    relay_bias: float = 1.3
    """A relay's RTT is multiplied by this before comparison: direct wins unless a relay is much faster."""
    ipv6_bias: float = 0.9
    """A direct IPv6 path's RTT is multiplied by this (iroh prefers IPv6 within 10%)."""
    switch_margin: float = 0.10
    """A challenger's score must be this much lower (relative) than the current one."""
    dwell: float = 2.0
    """Seconds the challenger must stay better before traffic moves."""
    trust_duration: float = 6.5
    """Seconds a path stays trusted after it was last heard (iroh ``TRUST_UDP_ADDR_DURATION``)."""
    heartbeat_interval: float = 5.0
    """Probe the current path when it has not been heard for this long (iroh ``HEARTBEAT_INTERVAL``)."""
    upgrade_interval: float = 60.0
    """Probe every other path this often, looking for a better one (iroh ``UPGRADE_INTERVAL``)."""
    ping_interval: float = 5.0
    """Shortest time between probes of one path (iroh ``DISCO_PING_INTERVAL``)."""
    reevaluate: float = 1.0
    """Longest time between two calls of ``select``."""

    def __post_init__(self) -> None:
        _check_config(
            self,
            ("relay_bias", "ipv6_bias", "trust_duration", "heartbeat_interval", "upgrade_interval", "reevaluate"),
            positive=True,
        )
        _check_config(self, ("switch_margin", "dwell", "ping_interval"))
        if self.switch_margin >= 1:
            raise LocalProtocolError("BiasedRttConfig.switch_margin must be below 1")


class BiasedRttSelector:
    """The iroh-like baseline: lowest last RTT, direct preferred, hysteresis; see the module docstring."""

    __slots__ = ("_config", "_pending", "_pending_since", "probes_requested")

    name = "biased-rtt"

    def __init__(self, config: BiasedRttConfig | None = None) -> None:
        self._config = config if config is not None else BiasedRttConfig()
        self._pending: str | None = None
        self._pending_since = 0.0
        self.probes_requested = 0
        """Probes this selector has asked for so far."""

    @property
    def config(self) -> BiasedRttConfig:
        """The selector's knobs."""
        return self._config

    def _score(self, estimate: PathEstimate) -> PathScore:
        rtt = estimate.last_rtt if estimate.last_rtt is not None else estimate.rtt
        factor = 1.0
        if estimate.kind == "relay":
            factor = self._config.relay_bias
        elif estimate.path.startswith("direct:["):
            factor = self._config.ipv6_bias
        return PathScore(
            path=estimate.path,
            kind=estimate.kind,
            state=estimate.state,
            rtt=rtt,
            loss=estimate.loss,
            jitter=estimate.jitter,
            latency=rtt,
            risk=0.0,
            bias=rtt * (factor - 1.0),
            cost=rtt * factor,
            uncertainty=0.0,
            heard_ago=estimate.heard_ago,
            samples=estimate.samples,
            reputation=estimate.reputation,
        )

    def _trusted(self, estimate: PathEstimate) -> bool:
        return (
            estimate.state is not PathState.BANNED
            and estimate.heard_ago is not None
            and estimate.heard_ago <= self._config.trust_duration
        )

    def _usable(self, estimate: PathEstimate) -> bool:
        """Measured, not banned, and its last probe answered (or not yet overdue by the trust duration)."""
        return (
            estimate.state is not PathState.BANNED
            and estimate.last_rtt is not None
            and (estimate.awaiting_for is None or estimate.awaiting_for <= self._config.trust_duration)
        )

    def select(self, ctx: PathContext, now: float) -> Decision:
        """Choose a path for ``ctx`` at ``now``; see the module docstring."""
        config = self._config
        now = _finite(now, "now", low=-math.inf)
        if not len(ctx):
            return _no_path(ctx, now, self.name, config.reevaluate)
        estimates = {e.path: e for e in ctx.estimates(now)}
        scores = {path: self._score(e) for path, e in estimates.items()}
        usable = {path: scores[path] for path, e in estimates.items() if self._usable(e)}
        current = ctx.current
        timer = now + config.reevaluate
        untrusted = False
        if current is None or current not in estimates or estimates[current].state is PathState.BANNED:
            self._pending = None
            choice = _cheapest(usable.values()) or _fallback_choice(scores)
            if choice is None:
                return _no_path(ctx, now, self.name, config.reevaluate, scores)
            target = choice.path
            reason = Reason.INITIAL if current is None else Reason.REMOVED
            why = "banned" if current in estimates else "removed"
            explanation = (
                f"first choice: {choice.describe()}"
                if current is None
                else f"{_short(current)} was {why}; moved to {choice.describe()}"
            )
        elif not self._trusted(estimates[current]):
            untrusted = True
            self._pending = None
            heard = estimates[current].heard_ago
            silence = "never heard" if heard is None else f"not heard for {heard:.2f} s"
            # As iroh: adopt a path that answered within the trust duration; without one, fall back
            # to the best relay (iroh's "mixed" mode sends through the relay until a pong arrives).
            others = {path: s for path, s in usable.items() if path != current}
            choice = _cheapest(s for path, s in others.items() if self._trusted(estimates[path]))
            if choice is None and estimates[current].kind == "direct":
                choice = _cheapest(s for s in others.values() if s.kind == "relay")
            if choice is None:
                target, reason = current, Reason.KEEP_NO_ALTERNATIVE
                explanation = f"{_short(current)} is {silence} (trust {config.trust_duration:g} s), no other path"
            else:
                target, reason = choice.path, Reason.FAILOVER
                explanation = (
                    f"{_short(current)} is {silence} (trust {config.trust_duration:g} s); moved to {choice.describe()}"
                )
        else:
            target, reason, explanation, timer = self._hysteresis(current, scores, usable, now, timer)
        probes = self._probes(estimates, target, untrusted)
        self.probes_requested += len(probes)
        for path, estimate in estimates.items():
            if path != target and estimate.probe_ago is not None:
                timer = min(timer, now - estimate.probe_ago + config.upgrade_interval)
        target_estimate = estimates[target]
        if target_estimate.heard_ago is not None:
            timer = min(timer, now - target_estimate.heard_ago + config.trust_duration + MIN_TIMER_STEP)
        return _decide(
            ctx,
            now,
            selector=self.name,
            target=target,
            reason=reason,
            explanation=explanation,
            scores=scores,
            probes=probes,
            next_timer=timer,
        )

    def _hysteresis(
        self, current: str, scores: dict[str, PathScore], usable: dict[str, PathScore], now: float, timer: float
    ) -> tuple[str, Reason, str, float]:
        config = self._config
        mine = scores[current]
        best = _cheapest(usable.values())
        if best is None or best.path == current or best.cost >= mine.cost * (1.0 - config.switch_margin):
            self._pending = None
            if best is None or best.path == current:
                return current, Reason.KEEP_BEST, f"current path is the best: {mine.describe()}", timer
            return (
                current,
                Reason.KEEP_BEST,
                f"{_short(best.path)} ({best.cost * 1000:.1f} ms) is within {config.switch_margin:.0%} "
                f"of the current {mine.describe()}",
                timer,
            )
        if self._pending != best.path:
            self._pending, self._pending_since = best.path, now
        waited = now - self._pending_since
        gain = 1.0 - best.cost / mine.cost
        if waited >= config.dwell:
            self._pending = None
            return (
                best.path,
                Reason.BETTER,
                f"{best.describe()} beat {mine.describe()} by {gain:.0%} for {waited:.1f} s",
                timer,
            )
        return (
            current,
            Reason.KEEP_PENDING,
            f"{_short(best.path)} is {gain:.0%} better; switching if it stays so for "
            f"{config.dwell - waited:.1f} more s",
            min(timer, self._pending_since + config.dwell),
        )

    def _probes(self, estimates: dict[str, PathEstimate], target: str, untrusted: bool) -> list[str]:
        config = self._config
        probes = []
        for path, estimate in estimates.items():
            if estimate.state is PathState.BANNED:
                continue
            since = math.inf if estimate.probe_ago is None else estimate.probe_ago
            if path == target:
                heard = math.inf if estimate.heard_ago is None else estimate.heard_ago
                due = heard >= config.heartbeat_interval and since >= config.heartbeat_interval
            else:
                due = since >= (config.ping_interval if untrusted else config.upgrade_interval)
            if due:
                probes.append(path)
        return probes


# ---------------------------------------------------------------------------------------------
# The learned selector


@dataclass(frozen=True, slots=True)
class LearnedConfig:
    """Knobs of :class:`LearnedSelector` (seconds unless said otherwise)."""

    switch_margin: float = 0.10
    """A challenger's cost must be this much lower (relative) than the current one."""
    switch_floor: float = 0.002
    """... and at least this much lower (absolute)."""
    confidence: float = 1.0
    """... and lower by this many standard deviations of the difference."""
    dwell: float = 3.0
    """Seconds the challenger must stay better before traffic moves."""
    damping_half_life: float = 600.0
    """Half-life of the flap penalty: each recent move away from a path doubles the dwell to return to it."""
    max_dwell: float = 60.0
    """Longest dwell flap damping may ask for."""
    confirm_window: float = 5.0
    """A challenger must have been heard this recently to be switched to (it is probed to confirm)."""
    relay_cost: float = 0.003
    """Added to a relay's cost: a mild preference for direct paths."""
    outage_cost: float = 1.0
    """Price of one second of outage, in seconds of latency per second of traffic."""
    probe_budget_per_hour: float = 720.0
    """Probes per hour the token bucket refills (exploration budget)."""
    probe_burst: float = 16.0
    """Size of the token bucket: most probes at once."""
    failover_reserve: float = 4.0
    """Tokens only a failover may spend: exploration never starves the search for a working path."""
    fallback_refresh: float = 15.0
    """Keep the best fallback path heard at least this recently."""
    recovery_min: float = 1.0
    """First retry of a silent or never-heard path."""
    recovery_growth: float = 1.5
    """Each unanswered retry multiplies the interval to the next one by this."""
    recovery_max: float = 120.0
    """Longest interval between retries of a silent path."""
    explore_gap: float = 10.0
    """Shortest interval between two exploration probes of one path."""
    failover_recheck: float = 0.25
    """After a failover, re-evaluate this soon, to move again if the new path does not answer."""
    failover_probes: int = 4
    """Alternatives probed per round (every ``failover_recheck``) while the current path is silent."""
    failover_wait: float = 0.4
    """After the current path went silent, wait this long for an alternative to answer a probe before
    moving to one that has not (silence_max + failover_wait stays within the 2 s goal)."""
    reevaluate: float = 1.0
    """Longest time between two calls of ``select``."""

    def __post_init__(self) -> None:
        _check_config(
            self,
            (
                "confirm_window",
                "fallback_refresh",
                "recovery_min",
                "recovery_growth",
                "recovery_max",
                "failover_recheck",
                "reevaluate",
                "damping_half_life",
            ),
            positive=True,
        )
        _check_config(
            self,
            (
                "switch_margin",
                "switch_floor",
                "confidence",
                "dwell",
                "relay_cost",
                "outage_cost",
                "probe_budget_per_hour",
                "probe_burst",
                "explore_gap",
                "failover_wait",
                "max_dwell",
                "failover_reserve",
            ),
        )
        if self.switch_margin >= 1:
            raise LocalProtocolError("LearnedConfig.switch_margin must be below 1")
        if self.recovery_max < self.recovery_min:
            raise LocalProtocolError("LearnedConfig.recovery_max must be at least recovery_min")
        if isinstance(self.failover_probes, bool) or not isinstance(self.failover_probes, int):
            raise LocalProtocolError("LearnedConfig.failover_probes must be an int")

    def probe_limit(self, seconds: float) -> float:
        """The most probes the selector can ask for in any window of ``seconds``."""
        return self.probe_burst + seconds * self.probe_budget_per_hour / 3600.0


class LearnedSelector:
    """The default selector: online model, cost, bounded exploration, hysteresis, fast failover."""

    __slots__ = (
        "_config",
        "_episodes",
        "_fate",
        "_left",
        "_pending",
        "_random",
        "_tokens",
        "_tokens_at",
        "probes_requested",
    )

    name = "learned"

    def __init__(self, rng: Random, config: LearnedConfig | None = None) -> None:
        if not isinstance(rng, Random):
            raise LocalProtocolError("LearnedSelector needs a seeded random.Random instance")
        self._random = rng
        self._config = config if config is not None else LearnedConfig()
        self._pending: dict[str, float] = {}
        self._episodes: dict[str, _Episode] = {}
        self._left: dict[str, tuple[float, float]] = {}
        self._fate: dict[tuple[str, str], tuple[float, float]] = {}
        self._tokens = self._config.probe_burst
        self._tokens_at: float | None = None
        self.probes_requested = 0
        """Probes this selector has asked for so far."""

    @property
    def config(self) -> LearnedConfig:
        """The selector's knobs."""
        return self._config

    def score(self, estimate: PathEstimate) -> PathScore:
        """The cost of one path, from its estimates (see the module docstring)."""
        config = self._config
        latency = estimate.latency
        risk = estimate.hazard * estimate.silence_timeout * config.outage_cost
        bias = config.relay_cost if estimate.kind == "relay" else 0.0
        loss = min(estimate.loss, 0.95)
        loss_slope = (estimate.rtt + 4.0 * estimate.jitter) / (1.0 - loss) ** 2
        uncertainty = math.hypot(estimate.rtt_std, estimate.loss_std * loss_slope)
        return PathScore(
            path=estimate.path,
            kind=estimate.kind,
            state=estimate.state,
            rtt=estimate.rtt,
            loss=estimate.loss,
            jitter=estimate.jitter,
            latency=latency,
            risk=risk,
            bias=bias,
            cost=latency + risk + bias,
            uncertainty=uncertainty,
            heard_ago=estimate.heard_ago,
            samples=estimate.samples,
            reputation=estimate.reputation,
        )

    def _refill(self, now: float) -> None:
        config = self._config
        if self._tokens_at is not None and now > self._tokens_at:
            self._tokens = min(
                config.probe_burst, self._tokens + (now - self._tokens_at) * config.probe_budget_per_hour / 3600.0
            )
        if self._tokens_at is None or now > self._tokens_at:
            self._tokens_at = now

    def select(self, ctx: PathContext, now: float) -> Decision:
        """Choose a path for ``ctx`` at ``now``; see the module docstring."""
        config = self._config
        now = _finite(now, "now", low=-math.inf)
        self._refill(now)
        if not len(ctx):
            self._pending.clear()
            return _no_path(ctx, now, self.name, config.reevaluate)
        estimates = {e.path: e for e in ctx.estimates(now)}
        self._learn_fate(estimates, now)
        scores = {path: self.score(e) for path, e in estimates.items()}
        up = {path: s for path, s in scores.items() if s.state is PathState.UP}
        current = ctx.current
        timer = now + config.reevaluate
        plan = _ProbePlan(self, estimates, now)
        if current is None or current not in scores or scores[current].state is PathState.BANNED:
            self._pending.clear()
            choice = _cheapest(up.values()) or _fallback_choice(scores)
            if choice is None:
                return _no_path(ctx, now, self.name, config.reevaluate, scores)
            target = choice.path
            reason = Reason.INITIAL if current is None else Reason.REMOVED
            why = "banned" if current in scores else "removed"
            measured = "" if choice.state is PathState.UP else " (not validated yet)"
            explanation = (
                f"first choice: {choice.describe()}{measured}"
                if current is None
                else f"{_short(current)} was {why}; moved to {choice.describe()}{measured}"
            )
            if choice.state is not PathState.UP:
                timer = min(timer, now + config.failover_recheck)
        elif (failing := self._failing(ctx, estimates[current], now)) is not None:
            self._pending.clear()
            target, reason, explanation = self._failover(current, failing, scores=scores, up=up, plan=plan)
            timer = min(timer, now + config.failover_recheck)
            if target == current and failing[1] < config.failover_wait:  # call again when the wait runs out
                timer = min(timer, now + config.failover_wait - failing[1])
        else:
            target, reason, explanation, timer = self._hysteresis(current, scores=scores, up=up, plan=plan, timer=timer)
        self._explore(target, scores=scores, up=up, plan=plan)
        deadline = ctx.model(target).silence_deadline()
        if deadline is not None:
            timer = min(timer, deadline)
        return _decide(
            ctx,
            now,
            selector=self.name,
            target=target,
            reason=reason,
            explanation=explanation,
            scores=scores,
            probes=plan.probes,
            next_timer=timer,
        )

    def _failing(self, ctx: PathContext, estimate: PathEstimate, now: float) -> tuple[str, float] | None:
        """Why the current path must be left at once and for how long that has been so, or ``None``."""
        if estimate.state is PathState.SILENT:
            assert estimate.awaiting_for is not None
            overdue = estimate.awaiting_for - estimate.silence_timeout
            why = f"silent: no answer for {estimate.awaiting_for:.2f} s (timeout {estimate.silence_timeout:.2f} s)"
            return why, overdue
        last = ctx.last_switch
        if (
            last is not None
            and last.reason is Reason.FAILOVER
            and last.path == estimate.path
            and (estimate.heard_ago is None or now - estimate.heard_ago < last.at)
            and estimate.awaiting_for is not None
            and estimate.awaiting_for >= min(1.5 * estimate.pto, estimate.silence_timeout)
        ):
            overdue = estimate.awaiting_for - min(1.5 * estimate.pto, estimate.silence_timeout)
            return f"not answering: nothing heard for {estimate.awaiting_for:.2f} s since the failover to it", overdue
        return None

    def _failover(
        self,
        current: str,
        failing: tuple[str, float],
        *,
        scores: dict[str, PathScore],
        up: dict[str, PathScore],
        plan: _ProbePlan,
    ) -> tuple[str, Reason, str]:
        config = self._config
        estimates, now = plan.estimates, plan.now
        why, overdue = failing
        quiet_for = estimates[current].heard_ago
        episode = self._episodes.get(current)
        if episode is None or now - episode.started > EPISODE_SPAN:
            episode = self._episodes[current] = _Episode(current, now)
        # Paths heard after the current one went quiet are known to work now. A failure of the
        # peer's access link takes several paths at once, so the cheapest path on paper is not
        # good enough: probe the others, those that survived this path's past failures first, a
        # few per round, and move to the cheapest that answers.
        working = [
            s
            for path, s in up.items()
            if path != current and s.heard_ago is not None and (quiet_for is None or s.heard_ago < quiet_for)
        ]
        untested = sorted(
            (
                s
                for path, s in scores.items()
                if path != current and s.state in (PathState.UP, PathState.UNKNOWN) and s not in working
            ),
            key=lambda s: (-self.survival(current, s.path), s.cost, s.path),
        )
        sent = 0
        for candidate in untested:
            if sent >= config.failover_probes:
                break
            if plan.add(candidate.path, min_gap=estimates[candidate.path].silence_timeout, failover=True):
                episode.probed.add(candidate.path)
                episode.asked.add(candidate.path)
                sent += 1
        choice = _cheapest(working)
        if choice is not None:
            return choice.path, Reason.FAILOVER, f"{_short(current)} is {why}; moved to {choice.describe()}"
        if overdue < config.failover_wait:
            return (
                current,
                Reason.KEEP_NO_ALTERNATIVE,
                f"{_short(current)} is {why}; waiting up to {config.failover_wait:g} s for probes of other paths",
            )
        # Nobody answered in time: move on what is known (traffic on a silent path is lost anyway),
        # but not to a path probed in this episode that has not answered within its PTO, nor to one
        # that has never answered at all (a peer's private address behind its NAT, typically):
        # keep probing instead.
        blind = next(
            (
                s
                for s in untested
                if estimates[s.path].samples > 0
                and (s.path not in episode.asked or (estimates[s.path].probe_ago or 0.0) < estimates[s.path].pto)
            ),
            None,
        )
        if blind is None:
            explanation = f"{_short(current)} is {why}; no other path is known to work"
            return current, Reason.KEEP_NO_ALTERNATIVE, explanation
        return (
            blind.path,
            Reason.FAILOVER,
            f"{_short(current)} is {why}; no other path answered within {config.failover_wait:g} s; "
            f"moved to {blind.describe()} (not confirmed)",
        )

    def survival(self, failed: str, other: str) -> float:
        """Probability that ``other`` works while ``failed`` is silent, learned from past failovers.

        A Beta estimate per pair whose prior (worth two failovers) is ``other``'s survival over the
        failures of every path (itself under Laplace's rule), so what one failure taught carries over
        to the failures of paths that share its fate.
        """
        alive, dead = self._fate.get((failed, other), (0.0, 0.0))
        overall_alive, overall_dead = self._fate.get(("*", other), (0.0, 0.0))
        prior = (overall_alive + 1.0) / (overall_alive + overall_dead + 2.0)
        return (alive + 2.0 * prior) / (alive + dead + 2.0)

    def _learn_fate(self, estimates: dict[str, PathEstimate], now: float) -> None:
        """Close what past failovers taught: which probed paths answered while the failed one was silent."""
        for failed, episode in list(self._episodes.items()):
            for path in list(episode.probed):
                estimate = estimates.get(path)
                if estimate is None:
                    episode.probed.discard(path)
                    continue
                answered = estimate.heard_ago is not None and now - estimate.heard_ago >= episode.started
                if answered or estimate.state is PathState.SILENT:
                    for pair in ((failed, path), ("*", path)):
                        alive, dead = self._fate.get(pair, (0.0, 0.0))
                        self._fate[pair] = (alive + answered, dead + (not answered))
                    episode.probed.discard(path)
            if not episode.probed and now - episode.started > EPISODE_SPAN:
                del self._episodes[failed]

    def _hysteresis(
        self,
        current: str,
        *,
        scores: dict[str, PathScore],
        up: dict[str, PathScore],
        plan: _ProbePlan,
        timer: float,
    ) -> tuple[str, Reason, str, float]:
        config = self._config
        estimates, now = plan.estimates, plan.now
        mine = scores[current]
        challengers: dict[str, PathScore] = {}
        for path, score in up.items():
            if path == current:
                continue
            gain = mine.cost - score.cost
            needed = max(
                config.switch_margin * mine.cost,
                config.switch_floor,
                config.confidence * math.hypot(mine.uncertainty, score.uncertainty),
            )
            if gain > needed:
                challengers[path] = score
        for path in list(self._pending):
            if path not in challengers:
                del self._pending[path]
        for path in challengers:
            self._pending.setdefault(path, now)
        # Only the cheapest challenger may take over: switching to a lesser one that happens to be
        # confirmed first would be followed by a second switch seconds later.
        best = _cheapest(challengers.values())
        if best is not None:
            heard = estimates[best.path].heard_ago
            fresh = heard is not None and heard <= config.confirm_window
            if not fresh:
                plan.add(best.path, min_gap=max(estimates[best.path].pto, 1.0))
            dwell = self._dwell(best.path, now)
            waited = now - self._pending[best.path]
            if waited >= dwell and fresh:
                self._pending.clear()
                self._left[current] = (self._damping(current, now) + 1.0, now)
                gain = 1.0 - best.cost / mine.cost
                return (
                    best.path,
                    Reason.BETTER,
                    f"{best.describe()} beat {mine.describe()} by {gain:.0%} for {waited:.1f} s",
                    timer,
                )
        top = best
        if top is not None:  # waiting out the dwell, or for a confirmation
            waited = now - self._pending[top.path]
            left = max(0.0, self._dwell(top.path, now) - waited)
            gain = 1.0 - top.cost / mine.cost
            heard = estimates[top.path].heard_ago
            confirm = "" if heard is not None and heard <= config.confirm_window else ", confirming"
            return (
                current,
                Reason.KEEP_PENDING,
                f"{_short(top.path)} is {gain:.0%} better ({top.cost * 1000:.1f} against {mine.cost * 1000:.1f} ms)"
                f"{confirm}; switching if it stays so for {left:.1f} more s",
                min(timer, now + max(left, config.failover_recheck)),
            )
        runner_up = _cheapest(s for path, s in up.items() if path != current)
        if runner_up is None or runner_up.cost >= mine.cost:
            return current, Reason.KEEP_BEST, f"current path is the best: {mine.describe()}", timer
        return (
            current,
            Reason.KEEP_BEST,
            f"{_short(runner_up.path)} ({runner_up.cost * 1000:.1f} ms) is not better than the current "
            f"{mine.describe()} by the margin ({config.switch_margin:.0%}, {config.switch_floor * 1000:g} ms, "
            f"{config.confidence:g} sd)",
            timer,
        )

    def _damping(self, path: str, now: float) -> float:
        """How often traffic recently left ``path`` for a better one, decayed (RFC 2439's figure of merit)."""
        penalty, at = self._left.get(path, (0.0, now))
        return float(penalty * 0.5 ** (max(0.0, now - at) / self._config.damping_half_life))

    def _dwell(self, path: str, now: float) -> float:
        """The dwell before moving to ``path``: doubled for each recent move away from it, as flap damping does."""
        return float(min(self._config.dwell * 2.0 ** self._damping(path, now), self._config.max_dwell))

    def _explore(
        self, target: str, *, scores: dict[str, PathScore], up: dict[str, PathScore], plan: _ProbePlan
    ) -> None:
        config = self._config
        estimates = plan.estimates
        # Keep the best fallback fresh, so that a failover lands on a path known to work.
        fallback = _cheapest(s for path, s in up.items() if path != target)
        if fallback is not None:
            heard = fallback.heard_ago if fallback.heard_ago is not None else math.inf
            if heard >= config.fallback_refresh:
                plan.add(fallback.path, min_gap=config.fallback_refresh / 2)
        # Validate paths never heard, and retry silent ones, cheapest first, with exponential
        # backoff; paths that could not beat the current one anyway are retried slowly. When one
        # path comes back, retry the silent ones now: paths that failed together come back together.
        recovered = any(
            e.recovered_ago is not None and e.recovered_ago <= config.reevaluate for e in estimates.values()
        )
        bar = scores[target].cost if target in scores else math.inf
        waiting = sorted(
            (s for path, s in scores.items() if path != target and s.state in (PathState.UNKNOWN, PathState.SILENT)),
            key=lambda s: (s.cost, s.path),
        )
        for score in waiting:
            estimate = estimates[score.path]
            retries = min(max(estimate.unanswered_probes - 1, 0), 64)  # the cap only keeps the power finite
            backoff = config.recovery_min * config.recovery_growth**retries
            if score.cost >= bar:
                backoff = max(backoff, config.fallback_refresh * 2)
            elif recovered and estimate.state is PathState.SILENT:
                backoff = max(estimate.pto, config.reevaluate)
            plan.add(score.path, min_gap=min(backoff, config.recovery_max))
        # Thompson sampling over live alternatives: probe the one most likely to beat the current path.
        if target not in scores:
            return
        bar = scores[target].cost * (1.0 - config.switch_margin)
        best_draw, best_path = math.inf, None
        for path in sorted(up):
            if path == target:
                continue
            score = scores[path]
            draw = self._random.gauss(score.cost, score.uncertainty)
            if draw < best_draw:
                best_draw, best_path = draw, path
        if best_path is not None and best_draw < bar:
            last_heard = estimates[best_path].heard_ago
            if last_heard is None or last_heard >= config.explore_gap:
                plan.add(best_path, min_gap=config.explore_gap)

    def _spend(self, *, reserve: float) -> bool:
        if self._tokens < 1.0 + reserve:
            return False
        self._tokens -= 1.0
        self.probes_requested += 1
        return True


EPISODE_SPAN = 10.0
"""Seconds a failover episode stays open to learn which probed paths answered."""


class _Episode:
    """One failover: which paths were probed while ``failed`` was silent."""

    __slots__ = ("asked", "failed", "probed", "started")

    def __init__(self, failed: str, started: float) -> None:
        self.failed = failed
        self.started = started
        self.probed: set[str] = set()
        """Probed paths whose outcome is not known yet."""
        self.asked: set[str] = set()
        """Every path probed in this episode."""


class _ProbePlan:
    """The probes one decision asks for, in priority order, each paid from the selector's budget."""

    __slots__ = ("_selector", "estimates", "now", "probes")

    def __init__(self, selector: LearnedSelector, estimates: dict[str, PathEstimate], now: float) -> None:
        self._selector = selector
        self.estimates = estimates
        self.now = now
        self.probes: list[str] = []

    def add(self, path: str, *, min_gap: float, failover: bool = False) -> bool:
        """Probe ``path`` unless it was probed less than ``min_gap`` ago or the budget is spent.

        Only a failover may spend the selector's reserve of tokens.
        """
        estimate = self.estimates[path]
        if path in self.probes or estimate.state is PathState.BANNED:
            return False
        if estimate.probe_ago is not None and estimate.probe_ago < min_gap:
            return False
        if not self._selector._spend(reserve=0.0 if failover else self._selector.config.failover_reserve):
            return False
        self.probes.append(path)
        return True
