"""The values of the memory store: provenance, memories, entities, relations, recall results, retention.

Theory of operation
===================

Everything the store hands out or takes in is a frozen, slotted dataclass that validates itself
when built, so a bad value fails where it is made, with a
:class:`~auralink.errors.MemoryInputError` that names the field.

*Provenance.* Every memory, entity and relation records where it came from
(:class:`Provenance`): the session (a call or room id), the speaker (an AuraID string or a
display name, as the caller knows them) and the time it was said, in wall-clock seconds since the
epoch. Wall-clock, not monotonic, because memories outlive processes and reboots.

*Owner.* Each memory belongs to one identity, its *owner*: the AuraID of the tenant or user whose
memory it is. Recall, export, retention and deletion work per owner. The owner is not part of
these values' validation: the store checks it (an AuraID or its string form) on every call.

*Kinds.* A memory has a kind: a short lower-case name. :data:`KINDS` lists the ones the co-host
agent writes (``highlight``, ``preference``, ``decision``, ``fact``); others are allowed, so
that an application can add its own (``action-item``).

This module is a pure core: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from auralink.errors import MemoryInputError

__all__ = [
    "KINDS",
    "MAX_ENTITY_WORDS",
    "MAX_TEXT_CHARS",
    "Entity",
    "Memory",
    "MemoryDraft",
    "Provenance",
    "Recalled",
    "Relation",
    "RetentionPolicy",
    "RetentionReport",
    "RetentionRule",
]

KINDS: tuple[str, ...] = ("highlight", "preference", "decision", "fact")
"""The kinds of memory the co-host agent writes; any name matching ``[a-z][a-z0-9_-]{0,31}`` is allowed."""

MAX_TEXT_CHARS = 16_384
"""The longest memory text (and recall query) accepted, in characters: memories are notes, not documents."""

MAX_ENTITY_WORDS = 6
"""The most words an entity name may have (recall looks for names of up to this many words in the query)."""

MAX_NAME_CHARS = 200
"""The longest speaker, session id, entity name or predicate accepted, in characters."""

_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_WORD = re.compile(r"\w+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_text(text: object, what: str = "text") -> str:
    """``text`` if it is a non-blank str of at most :data:`MAX_TEXT_CHARS` that UTF-8 can encode."""
    if not isinstance(text, str):
        raise MemoryInputError(f"{what} must be a str, not {type(text).__name__}", field=what)
    if not text.strip():
        raise MemoryInputError(f"{what} is empty; there is nothing to remember", field=what)
    return check_query(text, what)


def check_query(text: object, what: str = "query") -> str:
    """Like :func:`check_text`, but a blank string is allowed (it recalls nothing)."""
    if not isinstance(text, str):
        raise MemoryInputError(f"{what} must be a str, not {type(text).__name__}", field=what)
    if len(text) > MAX_TEXT_CHARS:
        raise MemoryInputError(
            f"{what} has {len(text)} characters, over the {MAX_TEXT_CHARS} limit; split it into several memories",
            field=what,
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MemoryInputError(
            f"{what} holds a character UTF-8 cannot encode (a lone surrogate at {exc.start})", field=what
        ) from exc
    return text


def check_name(value: object, what: str) -> str:
    """A stripped, non-empty single-line str of at most :data:`MAX_NAME_CHARS` characters."""
    if not isinstance(value, str):
        raise MemoryInputError(f"{what} must be a str, not {type(value).__name__}", field=what)
    stripped = value.strip()
    if not stripped or len(stripped) > MAX_NAME_CHARS or _CONTROL.search(stripped):
        raise MemoryInputError(
            f"{what} must be 1 to {MAX_NAME_CHARS} characters on one line, without control characters: {value!r}",
            field=what,
        )
    check_query(stripped, what)
    return stripped


def check_kind(kind: object) -> str:
    """A kind name: ``[a-z][a-z0-9_-]{0,31}``."""
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise MemoryInputError(
            f"a kind is a lower-case name such as {', '.join(KINDS)} (pattern [a-z][a-z0-9_-]{{0,31}}), not {kind!r}",
            field="kind",
        )
    return kind


def check_time(value: object, what: str) -> float:
    """Finite, non-negative wall-clock seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise MemoryInputError(f"{what} must be finite, non-negative wall-clock seconds, not {value!r}", field=what)
    return float(value)


def check_id(value: object, what: str = "memory_id") -> int:
    """A positive int that fits SQLite's 64-bit rowid."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise MemoryInputError(f"{what} must be a positive int, not {value!r}", field=what)
    return value


def entity_key(name: str) -> str:
    """How entity names are compared: case-folded words joined by one space.

    ``"Project  Falcon!"`` and ``"project falcon"`` are the same entity.
    """
    return " ".join(_WORD.findall(name.casefold()))


def check_entity_name(name: object) -> str:
    """An entity name: a valid name with 1 to :data:`MAX_ENTITY_WORDS` words."""
    stripped = check_name(name, "entity")
    words = len(entity_key(stripped).split())
    if not 1 <= words <= MAX_ENTITY_WORDS:
        raise MemoryInputError(
            f"an entity name has 1 to {MAX_ENTITY_WORDS} words (letters or digits), not {words}: {stripped!r}",
            field="entity",
        )
    return stripped


def mentioned_keys(text: str) -> list[str]:
    """Every run of 1 to :data:`MAX_ENTITY_WORDS` consecutive words of ``text``, as entity keys, without repeats."""
    words = _WORD.findall(text.casefold())
    seen: dict[str, None] = {}
    for start in range(len(words)):
        for end in range(start + 1, min(start + MAX_ENTITY_WORDS, len(words)) + 1):
            seen.setdefault(" ".join(words[start:end]))
    return list(seen)


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a memory, an entity or a relation came from."""

    session_id: str
    """The call, room or conversation it was said in."""
    speaker: str
    """Who said it: an AuraID string or a display name."""
    at: float
    """When it was said: wall-clock seconds since the epoch."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "session_id", check_name(self.session_id, "session_id"))
        object.__setattr__(self, "speaker", check_name(self.speaker, "speaker"))
        object.__setattr__(self, "at", check_time(self.at, "at"))


@dataclass(frozen=True, slots=True)
class MemoryDraft:
    """A memory to store with :meth:`~auralink.agents.memory.MemoryStore.remember_many`."""

    text: str
    """What to remember, in words."""
    provenance: Provenance
    """Who said it, when, and in which session."""
    kind: str = "fact"
    """``highlight``, ``preference``, ``decision``, ``fact`` (see :data:`KINDS`) or another name."""
    importance: float = 0.5
    """How much it matters, from 0 to 1; recall adds ``weights.importance`` * this."""
    entities: tuple[str, ...] = ()
    """Names of entities it is about (created if new). Known entities named in the text are linked anyway."""
    embedding: npt.NDArray[np.float32] | Sequence[float] | None = field(default=None, compare=False)
    """A vector from the store's embedder, computed elsewhere; None to let the store embed the text."""

    def __post_init__(self) -> None:
        check_text(self.text)
        if not isinstance(self.provenance, Provenance):
            raise MemoryInputError(
                f"provenance must be a Provenance, not {type(self.provenance).__name__}", field="provenance"
            )
        check_kind(self.kind)
        value = self.importance
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise MemoryInputError(f"importance must be a number from 0 to 1, not {value!r}", field="importance")
        object.__setattr__(self, "importance", float(value))
        if isinstance(self.entities, str) or not isinstance(self.entities, Sequence):
            raise MemoryInputError("entities is a sequence of names, not one string", field="entities")
        names = tuple(check_entity_name(name) for name in self.entities)
        object.__setattr__(self, "entities", names)


@dataclass(frozen=True, slots=True)
class Memory:
    """A stored memory."""

    id: int
    """Its id in the store (never reused)."""
    owner: str
    """The AuraID of the identity it belongs to."""
    kind: str
    """Its kind (see :data:`KINDS`)."""
    text: str
    """What was remembered."""
    importance: float
    """From 0 to 1."""
    provenance: Provenance
    """Session, speaker and time."""
    entities: tuple[str, ...]
    """Names of the entities it mentions, sorted."""


@dataclass(frozen=True, slots=True)
class Entity:
    """A node of an owner's graph: a person, project, place or thing, by name."""

    id: int
    """Its id in the store."""
    owner: str
    """The AuraID of the identity whose graph it is in."""
    name: str
    """Its name as first given (compared case-insensitively, by words)."""
    provenance: Provenance
    """Where it was first named."""


@dataclass(frozen=True, slots=True)
class Relation:
    """An edge of an owner's graph: ``subject predicate object``, such as ``Bob works_on Falcon``."""

    id: int
    """Its id in the store."""
    owner: str
    """The AuraID of the identity whose graph it is in."""
    subject: str
    """The subject entity's name."""
    predicate: str
    """What links them (free text, such as ``works_on`` or ``reports to``)."""
    object: str
    """The object entity's name."""
    provenance: Provenance
    """Where it was last asserted."""


@dataclass(frozen=True, slots=True)
class Recalled:
    """A memory that recall returned, with its score and why."""

    memory: Memory
    """The memory."""
    score: float
    """The combined score (see :mod:`~auralink.agents.memory.scoring`); higher is better."""
    similarity: float
    """The cosine between the query and the memory, in ``[-1, 1]``."""
    graph: float
    """The graph relevance, in ``[0, 1]``: 1 for a memory that mentions an entity named in the query."""
    recency: float
    """``2 ** (-age / half_life)``, in ``(0, 1]``."""
    reasons: tuple[str, ...]
    """Why it was recalled, in words, for logs and for explaining an answer."""


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """One rule of a :class:`RetentionPolicy`: a maximum age, a maximum count, or both, for one kind or all."""

    kind: str | None = None
    """The kind it applies to; None for every memory whatever its kind."""
    max_age: float | None = None
    """Forget memories said more than this many seconds before ``now``."""
    max_items: int | None = None
    """Keep at most this many memories (of ``kind``) per identity: the most recently said ones."""

    def __post_init__(self) -> None:
        if self.kind is not None:
            check_kind(self.kind)
        if self.max_age is not None:
            check_time(self.max_age, "max_age")
        if self.max_items is not None and (
            isinstance(self.max_items, bool) or not isinstance(self.max_items, int) or self.max_items < 0
        ):
            raise MemoryInputError(f"max_items must be an int >= 0, not {self.max_items!r}", field="max_items")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """What :meth:`~auralink.agents.memory.MemoryStore.apply_retention` forgets.

    A memory is forgotten when any rule that covers it says so. Entities that no memory mentions
    and no relation uses any more are forgotten with it.
    """

    rules: tuple[RetentionRule, ...] = ()
    """The rules; none means keep everything."""
    relation_max_age: float | None = None
    """Forget relations last asserted more than this many seconds before ``now``; None keeps them."""

    def __post_init__(self) -> None:
        if not isinstance(self.rules, tuple) or not all(isinstance(rule, RetentionRule) for rule in self.rules):
            raise MemoryInputError("rules is a tuple of RetentionRule", field="rules")
        if self.relation_max_age is not None:
            check_time(self.relation_max_age, "relation_max_age")


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What one :meth:`~auralink.agents.memory.MemoryStore.apply_retention` forgot."""

    memories: int
    """Memories forgotten."""
    relations: int
    """Relations forgotten."""
    entities: int
    """Entities forgotten because nothing used them any more."""
