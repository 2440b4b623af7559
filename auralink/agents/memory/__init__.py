"""Long-term memory for agents: a vector plus graph store in SQLite, recalled by meaning, links and recency.

Theory of operation
===================

A co-host agent writes what it should remember of a call (highlights, preferences, decisions,
facts) and recalls it later to answer questions. Each memory belongs to one identity (its owner's
AuraID) and says where it came from (session, speaker, time)::

    store = MemoryStore.open(home / "memory.db")          # SQLite, WAL, mode 0600
    said = Provenance(session_id="standup-42", speaker="@alice.aura", at=wall_clock)
    store.remember(owner, "We ship Falcon on Friday", said, kind="decision", entities=["Falcon"])
    store.relate(owner, "Bob", "works_on", "Falcon", said)
    for hit in store.recall(owner, "What did Bob's project decide?", now=wall_clock):
        print(hit.score, hit.memory.text, hit.reasons)

The parts, each in its own module:

* :mod:`~auralink.agents.memory.embedding`: the :class:`Embedder` protocol and the light default,
  :class:`HashingEmbedder` (lexical feature hashing; honest about not being semantic);
* :mod:`~auralink.agents.memory.scoring`: how similarity, graph neighbourhood, recency and
  importance combine (:class:`RecallWeights`), a pure core that takes ``now``;
* :mod:`~auralink.agents.memory.index`: the in-memory vectors, one contiguous float32 matrix per
  owner, searched with one matrix-vector product;
* :mod:`~auralink.agents.memory.types`: the values (:class:`Provenance`, :class:`Memory`,
  :class:`Recalled`, :class:`RetentionPolicy`...);
* :mod:`~auralink.agents.memory.export`: the per-identity export document and its strict reader;
* :mod:`~auralink.agents.memory.store`: :class:`MemoryStore`, SQLite plus the index: remember,
  relate, recall, retention, export, import, and deletion that leaves no trace.

Every error is an :class:`~auralink.errors.AgentMemoryError` (or an
:class:`~auralink.errors.InvalidAuraID` for a malformed owner). numpy is required (the ``agents``
extra); importing this package without it says so.
"""

try:
    import numpy  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("auralink.agents.memory needs numpy; install it with: pip install 'auralink[agents]'") from exc

from auralink.agents.memory.embedding import DEFAULT_DIMS, Embedder, HashingEmbedder
from auralink.agents.memory.scoring import RecallWeights
from auralink.agents.memory.store import MemoryStore
from auralink.agents.memory.types import (
    KINDS,
    Entity,
    Memory,
    MemoryDraft,
    Provenance,
    Recalled,
    Relation,
    RetentionPolicy,
    RetentionReport,
    RetentionRule,
)

__all__ = [
    "DEFAULT_DIMS",
    "KINDS",
    "Embedder",
    "Entity",
    "HashingEmbedder",
    "Memory",
    "MemoryDraft",
    "MemoryStore",
    "Provenance",
    "Recalled",
    "RecallWeights",
    "Relation",
    "RetentionPolicy",
    "RetentionReport",
    "RetentionRule",
]
