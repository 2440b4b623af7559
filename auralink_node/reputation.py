"""Reputation: scores per peer and per relay that decay over time, and bans that expire.

Theory of operation
===================

A :class:`ReputationBook` keeps, for each *subject* (a :class:`Role`, ``peer`` or ``relay``, and
an AuraID), what the node has seen it do, and turns that into a score in (0, 1) and a ban state. It
is a pure core: no clock, no I/O; every method that depends on time takes ``now``. Pass wall-clock
seconds, as to the node store: scores and bans outlive the process.

Scores: a Beta reputation with forgetting
-----------------------------------------
Each subject has *positive* and *negative* evidence, pseudo-counts of good and bad outcomes, and
its score is the mean of the Beta posterior under a uniform prior, as in Josang and Ismail's Beta
Reputation System (2002): ``(positive + 1) / (positive + negative + 2)``. A stranger scores 0.5;
the score moves towards 1 with successes and towards 0 with failures, and a subject with much
evidence moves less per event than one with little.

Evidence decays: both counts are multiplied by ``0.5 ** (elapsed / half_life)`` (a week by
default), applied lazily when a subject is next read or written. Because both decay at the same
rate, the score of a subject that does nothing moves monotonically back towards 0.5, and never past
it: old behaviour, good or bad, is forgotten, and a subject earns its way back.

What counts (:class:`Evidence`, weights in :class:`ReputationConfig`):

* ``success``: a relay session or DHT query that worked (+1 positive);
* ``failure``: a timeout, a failed dial, a dropped relay session (+1 negative);
* ``invalid-record``: a record that failed validation (forged, expired, replayed; +3 negative and
  one *strike*);
* ``abuse``: quota or protocol abuse (+10 negative and enough strikes for a ban at once);
* ``uptime`` (:meth:`ReputationBook.uptime`): +0.5 positive per hour seen up;
* ``relayed`` (:meth:`ReputationBook.relayed`): +1 positive per 100 MB relayed, at most +5 a call.

Bans
----
Strikes decay faster (a day's half-life). When they reach ``ban_strikes`` (2.5: three invalid
records within about half a day, or one abuse) the subject is banned until ``now + duration``, where the
duration starts at an hour and doubles with each ban (at most a week); the strikes are then
cleared. A ban *expires* on its own: :meth:`ReputationBook.is_banned` compares ``now`` with the
end. A subject that stays clean for ``ban_memory`` (30 days) after a ban has its escalation
forgotten. :meth:`ReputationBook.ban` and :meth:`ReputationBook.unban` let an operator decide.

Queries
-------
:meth:`ReputationBook.rank` orders candidates (relays to pick a home relay from, DHT peers to ask)
best first: banned ones are left out, strangers score 0.5, ties go to more evidence, then to the
AuraID, so the order is deterministic.

Persistence
-----------
The book's state is a set of :class:`ReputationEntry` rows, each valid *as of* its
``updated_at`` (decay is lazy, so nothing needs rewriting as time passes). Build a book from the
rows the node store loads (``ReputationBook(entries=store.load_reputation())``), and after changes
hand :meth:`ReputationBook.take_changes` to ``store.save_reputation``: it returns the rows changed
and the subjects forgotten (by :meth:`ReputationBook.prune`) since the last call.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from auralink.errors import LocalProtocolError
from auralink.identity.keys import AuraID

__all__ = [
    "Evidence",
    "ReputationBook",
    "ReputationConfig",
    "ReputationEntry",
    "Role",
    "Standing",
]


class Role(enum.Enum):
    """In which capacity a subject is judged: the same node may be a good relay and a bad DHT peer."""

    PEER = "peer"
    """Another node: a DHT peer, a connection partner."""
    RELAY = "relay"
    """A relay that forwards packets for us."""


class Evidence(enum.Enum):
    """What a subject did."""

    SUCCESS = "success"
    """An interaction that worked."""
    FAILURE = "failure"
    """An interaction that failed (timeout, dial failure, dropped session)."""
    INVALID_RECORD = "invalid-record"
    """A record that failed validation: forged, expired, replayed or malformed."""
    ABUSE = "abuse"
    """Quota or protocol abuse."""


def _finite(value: float, what: str, *, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LocalProtocolError(f"{what} must be a finite number, not {value!r}")
    if value < low:
        raise LocalProtocolError(f"{what} must be at least {low}, not {value!r}")
    return float(value)


def _now(value: float) -> float:
    return _finite(value, "now", low=-math.inf)


def _subject(role: Role, aura_id: AuraID | str) -> tuple[Role, str]:
    if not isinstance(role, Role):
        raise LocalProtocolError(f"role must be a Role, not {role!r}")
    return role, str(aura_id) if isinstance(aura_id, AuraID) else str(AuraID.parse(aura_id))


@dataclass(frozen=True, slots=True)
class ReputationConfig:
    """Weights, half-lives and ban rules (seconds for times)."""

    half_life: float = 7 * 86_400.0
    """After this long, evidence counts half."""
    strike_half_life: float = 86_400.0
    """After this long, a strike counts half."""
    success_weight: float = 1.0
    """Positive evidence per success."""
    failure_weight: float = 1.0
    """Negative evidence per failure."""
    invalid_record_weight: float = 3.0
    """Negative evidence per invalid record."""
    abuse_weight: float = 10.0
    """Negative evidence per abuse."""
    uptime_weight: float = 0.5
    """Positive evidence per hour seen up."""
    relayed_unit: float = 100e6
    """Bytes relayed that count as one success."""
    relayed_cap: float = 5.0
    """Most positive evidence one :meth:`ReputationBook.relayed` call can add."""
    ban_strikes: float = 2.5
    """Strikes that trigger a ban; an invalid record is one strike, an abuse is this many. Strikes decay,
    so 2.5 means three invalid records within about half a day (evenly spaced, at most 6.7 hours apart)."""
    ban_duration: float = 3600.0
    """Length of a first ban."""
    ban_growth: float = 2.0
    """Each further ban lasts this many times longer."""
    max_ban: float = 7 * 86_400.0
    """Longest automatic ban."""
    ban_memory: float = 30 * 86_400.0
    """A subject clean for this long after its last ban starts again from a first ban."""
    forget_below: float = 0.05
    """:meth:`ReputationBook.prune` forgets subjects with less evidence and strikes than this, and no ban."""

    def __post_init__(self) -> None:
        for name in (
            "half_life",
            "strike_half_life",
            "relayed_unit",
            "ban_strikes",
            "ban_duration",
            "max_ban",
            "ban_memory",
        ):
            if _finite(getattr(self, name), f"ReputationConfig.{name}") <= 0:
                raise LocalProtocolError(f"ReputationConfig.{name} must be positive")
        for name in (
            "success_weight",
            "failure_weight",
            "invalid_record_weight",
            "abuse_weight",
            "uptime_weight",
            "relayed_cap",
            "forget_below",
        ):
            _finite(getattr(self, name), f"ReputationConfig.{name}")
        if _finite(self.ban_growth, "ReputationConfig.ban_growth") < 1:
            raise LocalProtocolError("ReputationConfig.ban_growth must be at least 1")


DEFAULT_REPUTATION_CONFIG = ReputationConfig()


@dataclass(frozen=True, slots=True)
class ReputationEntry:
    """The stored state of one subject, valid as of ``updated_at`` (what the node store keeps)."""

    role: Role
    """Peer or relay."""
    aura_id: str
    """The subject's AuraID, canonical text form."""
    positive: float
    """Positive evidence as of ``updated_at``."""
    negative: float
    """Negative evidence as of ``updated_at``."""
    strikes: float
    """Strikes towards a ban as of ``updated_at``."""
    updated_at: float
    """When the entry was last brought up to date (wall-clock seconds)."""
    banned_until: float | None = None
    """End of the current or last ban, or ``None``."""
    ban_reason: str | None = None
    """Why the subject was last banned."""
    bans: int = 0
    """Bans so far (for escalation)."""

    def __post_init__(self) -> None:
        if not isinstance(self.role, Role):
            raise LocalProtocolError(f"role must be a Role, not {self.role!r}")
        object.__setattr__(self, "aura_id", _subject(self.role, self.aura_id)[1])
        for name in ("positive", "negative", "strikes"):
            _finite(getattr(self, name), f"ReputationEntry.{name}")
        _now(self.updated_at)
        if self.banned_until is not None:
            _now(self.banned_until)
        if self.ban_reason is not None and not isinstance(self.ban_reason, str):
            raise LocalProtocolError("ReputationEntry.ban_reason must be a string or None")
        if isinstance(self.bans, bool) or not isinstance(self.bans, int) or self.bans < 0:
            raise LocalProtocolError(f"ReputationEntry.bans must be a non-negative int, not {self.bans!r}")


@dataclass(frozen=True, slots=True)
class Standing:
    """What the book says about one subject at one time."""

    role: Role
    """Peer or relay."""
    aura_id: str
    """The subject."""
    score: float
    """Mean of the Beta posterior, in (0, 1); 0.5 for a stranger."""
    positive: float
    """Positive evidence, decayed to the time asked."""
    negative: float
    """Negative evidence, decayed to the time asked."""
    strikes: float
    """Strikes towards a ban, decayed."""
    banned: bool
    """Whether a ban is in force."""
    banned_until: float | None
    """When the ban in force ends, or ``None``."""
    ban_reason: str | None
    """Why the ban in force was imposed, or ``None``."""
    bans: int
    """Bans so far."""

    @property
    def evidence(self) -> float:
        """How much the score rests on: positive plus negative evidence."""
        return self.positive + self.negative

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``auralink-node peers --json``."""
        return {
            "role": self.role.value,
            "aura_id": self.aura_id,
            "score": round(self.score, 4),
            "positive": round(self.positive, 3),
            "negative": round(self.negative, 3),
            "strikes": round(self.strikes, 3),
            "banned": self.banned,
            "banned_until": self.banned_until,
            "ban_reason": self.ban_reason,
            "bans": self.bans,
        }


class _Subject:
    __slots__ = ("ban_reason", "banned_until", "bans", "negative", "positive", "strikes", "updated_at")

    def __init__(self, entry: ReputationEntry) -> None:
        self.positive = entry.positive
        self.negative = entry.negative
        self.strikes = entry.strikes
        self.updated_at = entry.updated_at
        self.banned_until = entry.banned_until
        self.ban_reason = entry.ban_reason
        self.bans = entry.bans


class ReputationBook:
    """Scores and bans of peers and relays; see the module docstring."""

    __slots__ = ("_config", "_dirty", "_removed", "_subjects")

    def __init__(self, config: ReputationConfig | None = None, *, entries: Iterable[ReputationEntry] = ()) -> None:
        self._config = config if config is not None else DEFAULT_REPUTATION_CONFIG
        self._subjects: dict[tuple[Role, str], _Subject] = {}
        self._dirty: set[tuple[Role, str]] = set()
        self._removed: set[tuple[Role, str]] = set()
        for entry in entries:
            if not isinstance(entry, ReputationEntry):
                raise LocalProtocolError(f"entries must be ReputationEntry rows, not {type(entry).__name__}")
            self._subjects[(entry.role, entry.aura_id)] = _Subject(entry)

    @property
    def config(self) -> ReputationConfig:
        """The book's weights and rules."""
        return self._config

    def __len__(self) -> int:
        return len(self._subjects)

    def __contains__(self, key: object) -> bool:
        return key in self._subjects

    # -- time ---------------------------------------------------------------------------------

    def _advance(self, subject: _Subject, now: float) -> None:
        """Decay ``subject`` to ``now`` (a clock that went backwards decays nothing)."""
        elapsed = now - subject.updated_at
        if elapsed <= 0:
            return
        config = self._config
        factor = 0.5 ** (elapsed / config.half_life)
        subject.positive *= factor
        subject.negative *= factor
        subject.strikes *= 0.5 ** (elapsed / config.strike_half_life)
        subject.updated_at = now
        if subject.banned_until is not None and now >= subject.banned_until:
            subject.ban_reason = None  # expired; keep the end for escalation
            if now - subject.banned_until >= config.ban_memory:
                subject.banned_until, subject.bans = None, 0

    def _get(self, key: tuple[Role, str], now: float) -> _Subject:
        subject = self._subjects.get(key)
        if subject is None:
            subject = self._subjects[key] = _Subject(ReputationEntry(key[0], key[1], 0.0, 0.0, 0.0, now))
            self._removed.discard(key)
        self._advance(subject, now)
        self._dirty.add(key)
        return subject

    # -- evidence -----------------------------------------------------------------------------

    def record(
        self,
        role: Role,
        aura_id: AuraID | str,
        evidence: Evidence,
        now: float,
        *,
        count: float = 1.0,
        reason: str | None = None,
    ) -> Standing:
        """Add ``count`` events of ``evidence`` at ``now``; ban if the strikes reach the threshold."""
        key, now = _subject(role, aura_id), _now(now)
        if not isinstance(evidence, Evidence):
            raise LocalProtocolError(f"evidence must be an Evidence, not {evidence!r}")
        count = _finite(count, "count")
        config = self._config
        subject = self._get(key, now)
        if evidence is Evidence.SUCCESS:
            subject.positive += config.success_weight * count
        elif evidence is Evidence.FAILURE:
            subject.negative += config.failure_weight * count
        elif evidence is Evidence.INVALID_RECORD:
            subject.negative += config.invalid_record_weight * count
            subject.strikes += count
        else:
            subject.negative += config.abuse_weight * count
            subject.strikes += config.ban_strikes * count
        if subject.strikes >= config.ban_strikes:
            self._impose(subject, now, None, reason or evidence.value)
        return self._standing(key, subject, now)

    def success(self, role: Role, aura_id: AuraID | str, now: float) -> Standing:
        """An interaction with the subject worked."""
        return self.record(role, aura_id, Evidence.SUCCESS, now)

    def failure(self, role: Role, aura_id: AuraID | str, now: float) -> Standing:
        """An interaction with the subject failed."""
        return self.record(role, aura_id, Evidence.FAILURE, now)

    def invalid_record(self, role: Role, aura_id: AuraID | str, now: float, *, reason: str | None = None) -> Standing:
        """The subject sent a record that failed validation."""
        return self.record(role, aura_id, Evidence.INVALID_RECORD, now, reason=reason)

    def abuse(self, role: Role, aura_id: AuraID | str, now: float, *, reason: str | None = None) -> Standing:
        """The subject abused a quota or the protocol: banned at once."""
        return self.record(role, aura_id, Evidence.ABUSE, now, reason=reason)

    def uptime(self, role: Role, aura_id: AuraID | str, seconds: float, now: float) -> Standing:
        """The subject was seen up for ``seconds`` (for example since the last report)."""
        key, now = _subject(role, aura_id), _now(now)
        seconds = _finite(seconds, "seconds")
        subject = self._get(key, now)
        subject.positive += self._config.uptime_weight * seconds / 3600.0
        return self._standing(key, subject, now)

    def relayed(self, aura_id: AuraID | str, nbytes: int, now: float) -> Standing:
        """The relay forwarded ``nbytes`` for us."""
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise LocalProtocolError(f"nbytes must be a non-negative int, not {nbytes!r}")
        key, now = _subject(Role.RELAY, aura_id), _now(now)
        config = self._config
        subject = self._get(key, now)
        subject.positive += min(nbytes / config.relayed_unit, config.relayed_cap)
        return self._standing(key, subject, now)

    # -- bans -----------------------------------------------------------------------------------

    def _impose(self, subject: _Subject, now: float, duration: float | None, reason: str) -> None:
        config = self._config
        if duration is None:
            duration = min(config.ban_duration * config.ban_growth**subject.bans, config.max_ban)
        until = now + duration
        subject.banned_until = until if subject.banned_until is None else max(until, subject.banned_until)
        subject.ban_reason = reason
        subject.bans += 1
        subject.strikes = 0.0

    def ban(
        self, role: Role, aura_id: AuraID | str, now: float, *, duration: float | None = None, reason: str = "operator"
    ) -> Standing:
        """Ban the subject from ``now`` for ``duration`` seconds (default: the next escalation step)."""
        key, now = _subject(role, aura_id), _now(now)
        if duration is not None and _finite(duration, "duration") <= 0:
            raise LocalProtocolError("a ban lasts a positive number of seconds")
        if not isinstance(reason, str):
            raise LocalProtocolError("reason must be a string")
        subject = self._get(key, now)
        self._impose(subject, now, duration, reason)
        return self._standing(key, subject, now)

    def unban(self, role: Role, aura_id: AuraID | str, now: float) -> Standing:
        """Lift the subject's ban, if any (its escalation count stays)."""
        key, now = _subject(role, aura_id), _now(now)
        subject = self._get(key, now)
        if subject.banned_until is not None and subject.banned_until > now:
            subject.banned_until = now
        subject.ban_reason = None
        return self._standing(key, subject, now)

    def is_banned(self, role: Role, aura_id: AuraID | str, now: float) -> bool:
        """Whether a ban on the subject is in force at ``now``."""
        return self.standing(role, aura_id, now).banned

    # -- queries ----------------------------------------------------------------------------------

    def _standing(self, key: tuple[Role, str], subject: _Subject | None, now: float) -> Standing:
        config = self._config
        if subject is None:
            positive = negative = strikes = 0.0
            banned_until, reason, bans = None, None, 0
        else:
            elapsed = max(0.0, now - subject.updated_at)
            factor = 0.5 ** (elapsed / config.half_life)
            positive, negative = subject.positive * factor, subject.negative * factor
            strikes = subject.strikes * 0.5 ** (elapsed / config.strike_half_life)
            banned_until, reason, bans = subject.banned_until, subject.ban_reason, subject.bans
        banned = banned_until is not None and now < banned_until
        return Standing(
            role=key[0],
            aura_id=key[1],
            score=(positive + 1.0) / (positive + negative + 2.0),
            positive=positive,
            negative=negative,
            strikes=strikes,
            banned=banned,
            banned_until=banned_until if banned else None,
            ban_reason=reason if banned else None,
            bans=bans,
        )

    def standing(self, role: Role, aura_id: AuraID | str, now: float) -> Standing:
        """The subject's standing at ``now`` (a stranger's is neutral); reading changes nothing."""
        key, now = _subject(role, aura_id), _now(now)
        return self._standing(key, self._subjects.get(key), now)

    def score(self, role: Role, aura_id: AuraID | str, now: float) -> float:
        """The subject's score at ``now``, in (0, 1); 0.5 for a stranger."""
        return self.standing(role, aura_id, now).score

    def rank(
        self, role: Role, candidates: Iterable[AuraID | str], now: float, *, include_banned: bool = False
    ) -> list[Standing]:
        """``candidates`` best first: by score, then evidence, then AuraID; banned ones left out unless asked."""
        now = _now(now)
        seen: dict[str, Standing] = {}
        for candidate in candidates:
            key = _subject(role, candidate)
            if key[1] not in seen:
                seen[key[1]] = self._standing(key, self._subjects.get(key), now)
        ranked = [s for s in seen.values() if include_banned or not s.banned]
        ranked.sort(key=lambda s: (-s.score, -s.evidence, s.aura_id))
        return ranked

    def standings(self, now: float, role: Role | None = None) -> list[Standing]:
        """Every known subject (of ``role``, if given), best first."""
        now = _now(now)
        result = [
            self._standing(key, subject, now)
            for key, subject in self._subjects.items()
            if role is None or key[0] is role
        ]
        result.sort(key=lambda s: (s.role.value, -s.score, -s.evidence, s.aura_id))
        return result

    # -- persistence ------------------------------------------------------------------------------

    def entries(self) -> list[ReputationEntry]:
        """The whole state, one row per subject, sorted by role and AuraID."""
        return [self._entry(key) for key in sorted(self._subjects, key=lambda k: (k[0].value, k[1]))]

    def _entry(self, key: tuple[Role, str]) -> ReputationEntry:
        subject = self._subjects[key]
        return ReputationEntry(
            role=key[0],
            aura_id=key[1],
            positive=subject.positive,
            negative=subject.negative,
            strikes=subject.strikes,
            updated_at=subject.updated_at,
            banned_until=subject.banned_until,
            ban_reason=subject.ban_reason,
            bans=subject.bans,
        )

    def take_changes(self) -> tuple[list[ReputationEntry], list[tuple[Role, str]]]:
        """Rows changed and subjects forgotten since the last call, for the store; then start afresh."""
        changed = [self._entry(key) for key in sorted(self._dirty, key=lambda k: (k[0].value, k[1]))]
        removed = sorted(self._removed, key=lambda k: (k[0].value, k[1]))
        self._dirty.clear()
        self._removed.clear()
        return changed, removed

    def prune(self, now: float) -> int:
        """Forget subjects whose evidence and strikes have decayed below ``forget_below`` and that are not
        banned (nor within ``ban_memory`` of a ban); return how many."""
        now = _now(now)
        threshold = self._config.forget_below
        forgotten: Sequence[tuple[Role, str]] = [
            key
            for key, subject in self._subjects.items()
            if (standing := self._standing(key, subject, now)).evidence < threshold
            and standing.strikes < threshold
            and (subject.banned_until is None or now - subject.banned_until >= self._config.ban_memory)
        ]
        for key in forgotten:
            del self._subjects[key]
            self._dirty.discard(key)
            self._removed.add(key)
        return len(forgotten)
