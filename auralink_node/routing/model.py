"""What the node knows about one path to a peer: RTT, jitter, loss, silence and outage risk, learned online.

Theory of operation
===================

A connection to a peer has candidate *paths*: ``direct:HOST:PORT`` (``[HOST]:PORT`` for IPv6) for
each address of the peer, and ``relay:AURAID`` for each relay that can reach it. The names are the
ones the node store uses for its ``path_stats`` rows (:func:`canonical_path` checks and normalises
them). A :class:`PathModel` turns what the adapter saw on one path into estimates with an
uncertainty; it is a pure core in the shape of aiortc's ``rate.py``: no clock, no I/O, every
method that depends on time takes ``now`` (monotonic seconds).

What goes in
------------
* :meth:`PathModel.sent`: something that the peer must answer went out (a packet with traffic, or a
  probe). The oldest unanswered send starts the silence timer.
* :meth:`PathModel.heard`: an answer came back (an ACK or a pong), with an RTT sample if the sender
  knows one. Hearing anything stops the silence timer.
* :meth:`PathModel.count`: packets acknowledged and declared lost (RFC 9002 loss detection), for the
  loss estimate.

What comes out (:meth:`PathModel.estimate`, a frozen :class:`PathEstimate`)
---------------------------------------------------------------------------
* **RTT**: a scalar Kalman filter over RTT samples. The RTT is a random walk whose step grows with
  the time since the last sample (``rtt_drift`` of the RTT per square root of a minute), so a path
  that has not been measured for a while is *uncertain*, which is what the selector's exploration
  looks at. The measurement noise is the jitter. An innovation beyond ``shift_sigmas`` standard
  deviations is clipped (one spike does not move the estimate much), and ``shift_count`` such
  innovations in a row, all on the same side, are a *regime shift* (a route change): the filter
  restarts from the new sample.
* **Jitter**: the mean absolute difference of consecutive RTT samples, smoothed with gain 1/16 as
  RFC 3550 section 6.4.1 does for interarrival jitter; samples far apart in time use the innovation
  instead. Also kept: SRTT and RTTVAR exactly as RFC 6298 section 2, for the PTO.
* **Loss**: a Beta posterior over the loss rate whose pseudo-counts are discounted with a half-life
  (``loss_half_life``), so old evidence fades, on top of a prior (``loss_prior``, weighted as
  ``loss_prior_weight`` packets). Its mean and standard deviation are reported.
* **Silence**: the path is *silent* once something sent on it has gone unanswered for
  ``silence_factor`` probe timeouts, where PTO = SRTT + max(4 RTTVAR, 1 ms) + max_ack_delay
  (RFC 9002 section 6.2.1) and the factor 3 is RFC 9002's persistent-congestion threshold
  (section 7.6.1); the timeout is clamped to [``silence_min``, ``silence_max``]. With the default
  ceiling of 1.5 s a selector that re-evaluates on :meth:`PathModel.silence_deadline` moves traffic
  well inside the 2 s the product asks for.
* **Outage risk**: a hazard (outages per second) with a Gamma prior of one outage per
  ``outage_prior_interval`` seconds, updated by the outages this path had (a silence on a path that
  carried traffic, or two unanswered probes in a row) over the time it was watched, both discounted
  with ``outage_half_life``. A relay's reputation scales the prior: 0.5 is neutral, a relay with
  reputation 1 starts four times less likely to fail, one with reputation 0 four times more.
* **Priors from history**: a :class:`PathPrior` (for example from the node store's SRTT, RTTVAR and
  loss of the last session) seeds the filter and the loss posterior; its weight fades with its age.

States (:class:`PathState`): ``unknown`` (never heard), ``up``, ``silent`` (an answer is overdue),
``banned`` (the caller banned the relay). Only ``up`` paths can carry traffic by choice.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Literal

from auralink.errors import ConfigError, IdentityError, LocalProtocolError
from auralink.identity.keys import AuraID
from auralink.wire.address import Address

__all__ = [
    "DEFAULT_MODEL_CONFIG",
    "ModelConfig",
    "PathEstimate",
    "PathKind",
    "PathModel",
    "PathPrior",
    "PathState",
    "canonical_path",
    "path_kind",
]

PathKind = Literal["direct", "relay"]
"""A direct UDP path to one of the peer's addresses, or a path through a relay."""

GRANULARITY = 0.001
"""RFC 9002 kGranularity: the floor of the RTT variation term of the PTO, in seconds."""

JITTER_TO_SIGMA = math.sqrt(math.pi) / 2
"""Standard deviation per unit of mean absolute difference of two Gaussian samples (E|X-Y| = 2 sigma / sqrt(pi))."""

NOISE_FLOOR = 0.0005
"""Smallest measurement noise (seconds) the RTT filter assumes: timers are not more precise than this."""

CONSECUTIVE_GAP = 1.0
"""Samples closer than this (seconds) count as consecutive for the RFC 3550 jitter estimator."""

MAX_RTT = 60.0
"""Longest RTT sample accepted, seconds; anything longer is a caller's bug, not a path."""

PRIOR_HALF_LIFE = 86_400.0
"""Seconds after which a :class:`PathPrior` from history counts half as much."""


def _finite(value: float, what: str, *, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LocalProtocolError(f"{what} must be a finite number, not {value!r}")
    if not low <= value <= high:
        raise LocalProtocolError(f"{what} must lie in [{low}, {high}], not {value!r}")
    return float(value)


def _now(value: float) -> float:
    return _finite(value, "now", low=-math.inf)


def canonical_path(path: str) -> str:
    """The canonical name of ``path``: ``direct:HOST:PORT`` (``direct:[V6]:PORT``) or ``relay:AURAID``.

    The same names as :func:`auralink_node.store.direct_path` and :func:`auralink_node.store.relay_path`.
    Raises :class:`~auralink.errors.LocalProtocolError` for anything else.
    """
    if not isinstance(path, str):
        raise LocalProtocolError(f"a path is a string, not {type(path).__name__}")
    kind, sep, rest = path.partition(":")
    try:
        if sep and kind == "direct":
            address = Address.parse(rest)
            if address.port == 0:
                raise LocalProtocolError(f"path {path!r}: port 0 cannot be dialled")
            return f"direct:{address}"
        if sep and kind == "relay":
            return f"relay:{AuraID.parse(rest)}"
    except (ConfigError, IdentityError) as exc:
        raise LocalProtocolError(f"path {path!r}: {exc}") from exc
    raise LocalProtocolError(f"path {path!r} is neither 'direct:HOST:PORT' nor 'relay:AURAID'")


def path_kind(path: str) -> PathKind:
    """``"direct"`` or ``"relay"``, from a canonical path name."""
    return "relay" if path.startswith("relay:") else "direct"


class PathState(enum.Enum):
    """Whether a path can carry traffic, as far as the node knows."""

    UNKNOWN = "unknown"
    """Never heard from: not validated yet (a prior may say what to expect)."""
    UP = "up"
    """Heard from, and no answer is overdue."""
    SILENT = "silent"
    """Something sent on it has gone unanswered for longer than the silence timeout."""
    BANNED = "banned"
    """The relay is banned by reputation; never chosen."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """How a :class:`PathModel` learns; the defaults suit Internet paths of 5 to 500 ms."""

    rtt_drift: float = 0.10
    """Standard deviation of the RTT's random walk, relative to the RTT, per square root of a minute."""
    shift_sigmas: float = 3.0
    """An RTT innovation beyond this many standard deviations is clipped (an outlier)."""
    shift_count: int = 3
    """This many outliers in a row on the same side are a regime shift: the filter restarts."""
    loss_prior: float = 0.01
    """Loss rate assumed before any evidence."""
    loss_prior_weight: float = 20.0
    """How many packets the loss prior is worth."""
    loss_half_life: float = 60.0
    """Seconds after which a packet's evidence about loss counts half."""
    outage_prior_interval: float = 1800.0
    """Seconds between outages assumed before any evidence (scaled by a relay's reputation)."""
    outage_half_life: float = 1800.0
    """Seconds after which an outage (and the time watched) counts half."""
    silence_factor: float = 3.0
    """Silence timeout in PTOs (RFC 9002 section 7.6.1, kPersistentCongestionThreshold)."""
    silence_min: float = 0.5
    """Shortest silence timeout, seconds (ACKs can pause that long on Wi-Fi without a failure)."""
    silence_max: float = 1.5
    """Longest silence timeout, seconds: keeps failover inside 2 s."""
    max_ack_delay: float = 0.025
    """The peer's max_ack_delay (RFC 9000 section 18.2 default), part of the PTO."""
    initial_rtt: float = 0.333
    """RTT assumed for a path never measured and without a prior (RFC 9002 section 6.2.2 kInitialRtt)."""

    def __post_init__(self) -> None:
        for name in ("rtt_drift", "shift_sigmas", "loss_prior_weight", "max_ack_delay"):
            _finite(getattr(self, name), f"ModelConfig.{name}")
        for name in (
            "loss_half_life",
            "outage_prior_interval",
            "outage_half_life",
            "silence_factor",
            "silence_min",
            "initial_rtt",
        ):
            if _finite(getattr(self, name), f"ModelConfig.{name}") <= 0:
                raise LocalProtocolError(f"ModelConfig.{name} must be positive")
        _finite(self.loss_prior, "ModelConfig.loss_prior", high=0.5)
        if _finite(self.silence_max, "ModelConfig.silence_max") < self.silence_min:
            raise LocalProtocolError("ModelConfig.silence_max must be at least silence_min")
        if isinstance(self.shift_count, bool) or not isinstance(self.shift_count, int) or self.shift_count < 1:
            raise LocalProtocolError(f"ModelConfig.shift_count must be an int of at least 1, not {self.shift_count!r}")


DEFAULT_MODEL_CONFIG = ModelConfig()
"""The configuration paths get unless the caller passes one."""


@dataclass(frozen=True, slots=True)
class PathPrior:
    """What history says about a path before this session measures it (all times in seconds)."""

    rtt: float
    """Smoothed RTT (RFC 6298 SRTT)."""
    rtt_var: float
    """RTT variation (RFC 6298 RTTVAR)."""
    loss: float = 0.0
    """Smoothed loss rate, 0..1."""
    samples: int = 1
    """How many samples the history is made of."""
    age: float = 0.0
    """Seconds since the history was last updated."""

    def __post_init__(self) -> None:
        if _finite(self.rtt, "PathPrior.rtt", high=MAX_RTT) <= 0:
            raise LocalProtocolError("PathPrior.rtt must be positive")
        _finite(self.rtt_var, "PathPrior.rtt_var")
        _finite(self.loss, "PathPrior.loss", high=1.0)
        _finite(self.age, "PathPrior.age")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 0:
            raise LocalProtocolError(f"PathPrior.samples must be a non-negative int, not {self.samples!r}")


@dataclass(frozen=True, slots=True)
class PathEstimate:
    """A snapshot of one path's estimates at ``at`` (seconds throughout)."""

    path: str
    """The canonical path name."""
    kind: PathKind
    """``direct`` or ``relay``."""
    at: float
    """When the snapshot was taken."""
    state: PathState
    """Whether the path can carry traffic."""
    rtt: float
    """Predicted RTT: the filter's mean, or the prior's, or ``initial_rtt`` if nothing is known."""
    rtt_std: float
    """Standard deviation of the predicted RTT (grows while the path is not measured)."""
    last_rtt: float | None
    """The most recent RTT sample, if any."""
    jitter: float
    """Predicted jitter (mean absolute difference of consecutive RTTs)."""
    loss: float
    """Predicted loss rate, 0..1 (posterior mean)."""
    loss_std: float
    """Standard deviation of the predicted loss rate."""
    pto: float
    """Probe timeout, RFC 9002 section 6.2.1, from SRTT and RTTVAR."""
    silence_timeout: float
    """How long an answer may be overdue before the path counts as silent."""
    hazard: float
    """Expected outages per second (posterior mean)."""
    samples: int
    """RTT samples folded in this session."""
    heard_ago: float | None
    """Seconds since the path last answered, or ``None`` if it never did."""
    awaiting_for: float | None
    """Seconds since the oldest unanswered send, or ``None`` if nothing is outstanding."""
    probe_ago: float | None
    """Seconds since the last probe was sent on the path, or ``None``."""
    unanswered_probes: int
    """Probes sent since the path last answered."""
    recovered_ago: float | None
    """Seconds since the path last answered after being silent, or ``None``."""
    outages: int
    """Outages seen on the path this session."""
    reputation: float | None
    """The relay's reputation, 0..1, if the caller set one."""

    @property
    def latency(self) -> float:
        """Expected time for a packet to be acknowledged, retransmissions included.

        ``rtt + loss / (1 - loss) * (rtt + 4 * jitter)``: each loss costs about one more PTO-like
        round (RFC 9002), and the expected number of losses before a success is ``p / (1 - p)``.
        """
        loss = min(self.loss, 0.95)
        return self.rtt + loss / (1.0 - loss) * (self.rtt + 4.0 * self.jitter)


class PathModel:
    """The online model of one path; see the module docstring."""

    __slots__ = (
        "_awaiting_since",
        "_config",
        "_exposure",
        "_jitter",
        "_last_heard",
        "_last_probe",
        "_last_rtt",
        "_last_rtt_at",
        "_loss_at",
        "_loss_bad",
        "_loss_good",
        "_mean",
        "_outage_at",
        "_outage_open",
        "_outages",
        "_outages_total",
        "_outliers",
        "_p",
        "_prior_rtt",
        "_recovered_at",
        "_rtt_at",
        "_rttvar",
        "_samples",
        "_silent",
        "_srtt",
        "_traffic",
        "_unanswered",
        "banned",
        "kind",
        "path",
        "reputation",
    )

    def __init__(
        self,
        path: str,
        now: float,
        *,
        config: ModelConfig = DEFAULT_MODEL_CONFIG,
        prior: PathPrior | None = None,
        reputation: float | None = None,
    ) -> None:
        now = _now(now)
        self.path = canonical_path(path)
        """The canonical path name."""
        self.kind: PathKind = path_kind(self.path)
        """``direct`` or ``relay``."""
        self.reputation: float | None = None
        """The relay's reputation, 0..1, or ``None`` (neutral); set with :meth:`set_reputation`."""
        self.banned = False
        """Whether the relay is banned (the path is never chosen)."""
        self._config = config
        self._samples = 0
        self._mean: float | None = None
        self._p = 0.0
        self._rtt_at = now
        self._outliers = 0
        self._srtt: float | None = None
        self._rttvar: float | None = None
        self._jitter: float | None = None
        self._last_rtt: float | None = None
        self._last_rtt_at: float | None = None
        self._prior_rtt: float | None = None
        self._loss_good = 0.0
        self._loss_bad = 0.0
        self._loss_at = now
        self._outages = 0.0
        self._outages_total = 0
        self._exposure = 0.0
        self._outage_at = now
        self._outage_open = False
        self._last_heard: float | None = None
        self._awaiting_since: float | None = None
        self._last_probe: float | None = None
        self._unanswered = 0
        self._silent = False
        self._recovered_at: float | None = None
        self._traffic = False
        self.set_reputation(reputation)
        if prior is not None:
            self._apply_prior(prior, now)

    def _apply_prior(self, prior: PathPrior, now: float) -> None:
        weight = min(prior.samples, 20) * 0.5 ** (prior.age / PRIOR_HALF_LIFE)
        jitter = max(prior.rtt_var, NOISE_FLOOR)
        self._prior_rtt = prior.rtt
        self._mean = prior.rtt
        # The prior's own spread, plus what the RTT may have drifted since, capped at the RTT itself.
        drift = self._drift_var(prior.rtt, prior.age)
        self._p = min(jitter**2 / max(weight, 1.0) + drift, prior.rtt**2)
        self._rtt_at = now
        self._srtt, self._rttvar, self._jitter = prior.rtt, prior.rtt_var, jitter
        self._loss_bad = prior.loss * weight
        self._loss_good = (1.0 - prior.loss) * weight
        self._loss_at = now

    def set_reputation(self, reputation: float | None, *, banned: bool = False) -> None:
        """Set the relay's reputation (0..1, ``None`` for neutral) and whether it is banned."""
        self.reputation = None if reputation is None else _finite(reputation, "reputation", high=1.0)
        self.banned = bool(banned)

    # -- inputs ---------------------------------------------------------------------------------

    def sent(self, now: float, *, probe: bool = False) -> None:
        """Something the peer must answer went out on this path at ``now`` (traffic, or a probe)."""
        now = _now(now)
        self._check_silence(now)
        if self._awaiting_since is None:
            self._awaiting_since = now
        if probe:
            self._last_probe = now
            self._unanswered += 1
            if self._silent and self._unanswered == 2:  # the probe after a lost one: an outage
                self._note_outage(now)
        else:
            self._traffic = True

    def heard(self, now: float, rtt: float | None = None) -> None:
        """An answer came back at ``now``; ``rtt`` is its RTT sample in seconds, if known."""
        now = _now(now)
        if rtt is not None:
            rtt = _finite(rtt, "rtt", high=MAX_RTT)
            if rtt <= 0:
                raise LocalProtocolError("an RTT sample must be positive")
        self._check_silence(now)
        self._last_heard = now if self._last_heard is None else max(self._last_heard, now)
        if self._silent:
            self._recovered_at = now
        self._awaiting_since = None
        self._unanswered = 0
        self._silent = False
        self._outage_open = False
        if rtt is not None:
            self._rtt_sample(rtt, now)

    def count(self, now: float, *, acked: int = 0, lost: int = 0) -> None:
        """Fold ``acked`` acknowledged and ``lost`` lost packets into the loss estimate."""
        now = _now(now)
        for value, what in ((acked, "acked"), (lost, "lost")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LocalProtocolError(f"{what} must be a non-negative int, not {value!r}")
        self._decay_loss(now)
        self._loss_good += acked
        self._loss_bad += lost

    # -- the RTT filter ---------------------------------------------------------------------------

    def _drift_var(self, rtt: float, elapsed: float) -> float:
        return (self._config.rtt_drift * rtt) ** 2 * max(0.0, elapsed) / 60.0

    def _noise_var(self) -> float:
        jitter = self._jitter if self._jitter is not None else NOISE_FLOOR
        return max(jitter * JITTER_TO_SIGMA, NOISE_FLOOR) ** 2

    def _rtt_sample(self, rtt: float, now: float) -> None:
        config = self._config
        previous, previous_at = self._last_rtt, self._last_rtt_at
        bound = math.inf
        if self._mean is None:
            self._mean, self._p = rtt, (rtt / 2) ** 2
            innovation = 0.0
        else:
            p = self._p + self._drift_var(self._mean, now - self._rtt_at)
            noise = self._noise_var()
            innovation = rtt - self._mean
            bound = config.shift_sigmas * math.sqrt(p + noise)
            if abs(innovation) > bound:
                same_side = self._outliers == 0 or (self._outliers > 0) == (innovation > 0)
                self._outliers = (abs(self._outliers) + 1 if same_side else 1) * (1 if innovation > 0 else -1)
                if abs(self._outliers) >= config.shift_count:  # a regime shift: start again from here
                    self._mean, self._p, self._outliers = rtt, max(noise, (rtt / 4) ** 2), 0
                    self._srtt, self._rttvar = rtt, rtt / 2
                    self._rtt_at = now
                    self._finish_sample(rtt, now, previous=previous, previous_at=previous_at, innovation=innovation)
                    return
                innovation = math.copysign(bound, innovation)
            else:
                self._outliers = 0
            gain = p / (p + noise)
            self._mean += gain * innovation
            self._p = (1.0 - gain) * p
        self._rtt_at = now
        # RFC 6298 section 2: SRTT and RTTVAR, for the PTO.
        if self._srtt is None or self._rttvar is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt
        self._finish_sample(rtt, now, previous=previous, previous_at=previous_at, innovation=innovation, bound=bound)

    def _finish_sample(
        self,
        rtt: float,
        now: float,
        *,
        previous: float | None,
        previous_at: float | None,
        innovation: float,
        bound: float = math.inf,
    ) -> None:
        # RFC 3550 section 6.4.1: J += (|D| - J) / 16, with D the difference of consecutive RTTs,
        # clipped like the innovation, so that one spike does not blind the filter to what follows.
        if previous is not None and previous_at is not None and now - previous_at <= CONSECUTIVE_GAP:
            difference = min(abs(rtt - previous), bound)
        else:
            difference = min(abs(innovation), bound) / JITTER_TO_SIGMA if self._samples else rtt / 10
        if self._jitter is None:
            self._jitter = difference
        else:
            self._jitter += (difference - self._jitter) / 16.0
        self._last_rtt, self._last_rtt_at = rtt, now
        self._samples += 1

    # -- loss and outages -------------------------------------------------------------------------

    def _decay_loss(self, now: float) -> None:
        elapsed = now - self._loss_at
        if elapsed > 0:
            factor = 0.5 ** (elapsed / self._config.loss_half_life)
            self._loss_good *= factor
            self._loss_bad *= factor
            self._loss_at = now

    def _decay_outages(self, now: float) -> None:
        elapsed = now - self._outage_at
        if elapsed > 0:
            factor = 0.5 ** (elapsed / self._config.outage_half_life)
            # Exposure is the discounted time watched: the integral of the decay over the interval.
            self._exposure = self._exposure * factor + self._config.outage_half_life / math.log(2) * (1.0 - factor)
            self._outages *= factor
            self._outage_at = now

    def _reputation_factor(self) -> float:
        """How much more likely than the prior this path is to fail: 4 at reputation 0, 1/4 at 1."""
        return 1.0 if self.reputation is None else 4.0 ** (1.0 - 2.0 * self.reputation)

    def silence_timeout(self) -> float:
        """Seconds an answer may be overdue before the path counts as silent."""
        config = self._config
        return min(max(config.silence_factor * self.pto(), config.silence_min), config.silence_max)

    def pto(self) -> float:
        """RFC 9002 section 6.2.1: ``smoothed_rtt + max(4 * rttvar, kGranularity) + max_ack_delay``."""
        srtt = self._srtt if self._srtt is not None else self._config.initial_rtt
        rttvar = self._rttvar if self._rttvar is not None else srtt / 2
        return srtt + max(4.0 * rttvar, GRANULARITY) + self._config.max_ack_delay

    def silence_deadline(self) -> float | None:
        """When the path will count as silent if nothing is heard, or ``None`` if nothing is outstanding."""
        if self._awaiting_since is None or self._silent:
            return None
        return self._awaiting_since + self.silence_timeout()

    def _check_silence(self, now: float) -> None:
        deadline = self.silence_deadline()
        if deadline is None or now < deadline:
            return
        self._silent = True
        if self._traffic:
            self._note_outage(deadline)
        elif self._unanswered > 0:
            self._decay_loss(deadline)
            self._loss_bad += 1.0  # the probe is lost
        self._traffic = False

    def _note_outage(self, at: float) -> None:
        """Count one outage, once per silence, on a path that has answered before."""
        if self._outage_open or self._last_heard is None:
            return
        self._outage_open = True
        self._decay_outages(at)
        self._outages += 1.0
        self._outages_total += 1

    def state(self, now: float) -> PathState:
        """The path's :class:`PathState` at ``now``."""
        self._check_silence(_now(now))
        if self.banned:
            return PathState.BANNED
        if self._silent:
            return PathState.SILENT
        if self._last_heard is None:
            return PathState.UNKNOWN
        return PathState.UP

    @property
    def last_heard(self) -> float | None:
        """When the path last answered, or ``None``."""
        return self._last_heard

    @property
    def last_probe(self) -> float | None:
        """When a probe was last sent on the path, or ``None``."""
        return self._last_probe

    @property
    def samples(self) -> int:
        """RTT samples folded in this session."""
        return self._samples

    def estimate(self, now: float) -> PathEstimate:
        """The path's estimates at ``now``."""
        now = _now(now)
        state = self.state(now)
        config = self._config
        if self._mean is None:
            rtt = config.initial_rtt
            rtt_var = rtt**2
        else:
            rtt = self._mean
            rtt_var = min(self._p + self._drift_var(rtt, now - self._rtt_at), rtt**2)
        jitter = self._jitter if self._jitter is not None else rtt / 10
        self._decay_loss(now)
        factor = self._reputation_factor()
        prior_loss = min(config.loss_prior * factor, 0.5)
        bad = self._loss_bad + prior_loss * config.loss_prior_weight
        total = self._loss_good + self._loss_bad + config.loss_prior_weight
        loss = bad / total
        self._decay_outages(now)
        hazard = (1.0 + self._outages) / (config.outage_prior_interval / factor + self._exposure)
        return PathEstimate(
            path=self.path,
            kind=self.kind,
            at=now,
            state=state,
            rtt=rtt,
            rtt_std=math.sqrt(rtt_var),
            last_rtt=self._last_rtt,
            jitter=jitter,
            loss=loss,
            loss_std=math.sqrt(loss * (1.0 - loss) / (total + 1.0)),
            pto=self.pto(),
            silence_timeout=self.silence_timeout(),
            hazard=hazard,
            samples=self._samples,
            heard_ago=None if self._last_heard is None else max(0.0, now - self._last_heard),
            awaiting_for=None if self._awaiting_since is None else max(0.0, now - self._awaiting_since),
            probe_ago=None if self._last_probe is None else max(0.0, now - self._last_probe),
            unanswered_probes=self._unanswered,
            recovered_ago=None if self._recovered_at is None else max(0.0, now - self._recovered_at),
            outages=self._outages_total,
            reputation=self.reputation,
        )
