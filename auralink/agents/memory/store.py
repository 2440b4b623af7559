"""The memory store: memories, entities and relations of each identity in one SQLite file, recalled fast.

Theory of operation
===================

:class:`MemoryStore` keeps, per owner identity (an AuraID):

* **memories**: a text, its kind, an importance from 0 to 1, its embedding, and its
  :class:`~auralink.agents.memory.types.Provenance` (session, speaker, time);
* **entities**: named nodes (people, projects, places), unique per owner by their case-folded
  words, each with the provenance of its first naming;
* **mentions**: which memories mention which entities. A memory is linked to the entities its
  writer names, and to every entity of its owner whose name appears in its text;
* **relations**: ``subject predicate object`` edges between entities, with the provenance of
  their latest assertion.

*Recall* (:meth:`MemoryStore.recall`) ranks an owner's memories for a query by similarity, graph
neighbourhood and recency, with the weights of :class:`~auralink.agents.memory.scoring.RecallWeights`.
The graph walk runs in SQL: it finds the owner's entities named in the query (every run of up to
six words is looked up in the ``(owner, key)`` index) and follows their relations one hop. The
rest runs in RAM: at open the store loads every embedding and every mention into a
:class:`~auralink.agents.memory.index.VectorIndex` (one contiguous float32 matrix per owner, and
per entity the ids of the memories that mention it), appends on write, and scores all of an
owner's memories at once: one matrix-vector product for similarity, one ``bincount`` for the
graph term. Only the best ``limit`` rows are then read back from SQLite.

*One process owns a file.* The connection runs in ``locking_mode=EXCLUSIVE``: it takes the file's
lock on first use and keeps it until :meth:`MemoryStore.close`, and the WAL index lives in the
process's heap (so there is no ``-shm`` file). A second opener, in this process or another, gets
:class:`~auralink.errors.MemoryStoreError` at once. This is what keeps the in-RAM index equal to
the file: nobody else can write behind its back. Within the process, one lock serialises every
call, so threads may share a store; embedding happens outside the lock.

*Forgetting leaves no trace.* Three mechanisms, each shown necessary by a test that fails
without it:

1. ``PRAGMA secure_delete=ON`` makes SQLite overwrite deleted rows (text, names, vectors) with
   zeros in the pages it rewrites, freed pages included.
2. B-tree *interior* pages of an index keep copies of keys (owner AuraIDs, entity names,
   predicates) as dividers, and deleting a row does not rewrite them. So a call that deletes
   entities or relations, and :meth:`~MemoryStore.forget_identity` for every table, runs
   ``REINDEX``: the indexes are written anew and their old pages zeroed.
3. ``PRAGMA wal_checkpoint(TRUNCATE)`` after each call that deletes
   (:meth:`~MemoryStore.forget`, :meth:`~MemoryStore.apply_retention`,
   :meth:`~MemoryStore.forget_identity`) copies the zeroed pages into the main file and truncates
   the WAL, whose older frames still held the text.

The index zeroes the vectors it drops. Entities that nothing mentions or relates any more go with
the memories that named them. There is no full-text index to clean.

*Durability and files*, as every AuraLink database (``auralink._sqlite``): WAL with
``synchronous=NORMAL``, one short transaction per call, the file created 0600 in a 0700
directory, ``PRAGMA application_id`` ("AURM") to refuse another program's database,
``user_version`` migrations (append, never edit). The embedder's ``name/dims`` is written at
creation, in the first migration's transaction; opening with another embedder raises
:class:`~auralink.errors.EmbedderMismatch`. SQLite's errors, and a file that is damaged, another
program's or from a newer AuraLink, become :class:`~auralink.errors.MemoryStoreError`.

*Time* is passed in: :class:`~auralink.agents.memory.types.Provenance` carries when something
was said, and :meth:`~MemoryStore.recall` and :meth:`~MemoryStore.apply_retention` take ``now``,
all in wall-clock seconds. Nothing here reads a clock.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from auralink._sqlite import Database, DatabaseErrors, DatabaseKind, Migration
from auralink.agents.memory.embedding import Embedder, HashingEmbedder
from auralink.agents.memory.export import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    parse_export,
    provenance_json,
    vector_text,
)
from auralink.agents.memory.index import Hit, VectorIndex
from auralink.agents.memory.scoring import DAY, RecallWeights
from auralink.agents.memory.types import (
    Entity,
    Memory,
    MemoryDraft,
    Provenance,
    Recalled,
    Relation,
    RetentionPolicy,
    RetentionReport,
    check_entity_name,
    check_id,
    check_kind,
    check_name,
    check_query,
    check_time,
    entity_key,
    mentioned_keys,
)
from auralink.errors import EmbedderMismatch, MemoryInputError, MemoryNotFound, MemoryStoreError
from auralink.identity.keys import AuraID

__all__ = ["APPLICATION_ID", "MAX_RECALL_LIMIT", "SCHEMA_VERSION", "MemoryStore"]

APPLICATION_ID = 0x4155524D
"""``PRAGMA application_id`` of a memory database ("AURM")."""

MAX_RECALL_LIMIT = 1000
"""The most results one recall returns."""

_LOAD_CHUNK = 8192

_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "memories, entities, mentions and relations, and the embedder's name",
        """
    CREATE TABLE meta (
        key    TEXT PRIMARY KEY NOT NULL,
        value  TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE memories (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        owner       TEXT NOT NULL,
        kind        TEXT NOT NULL,
        text        TEXT NOT NULL,
        importance  REAL NOT NULL,
        session_id  TEXT NOT NULL,
        speaker     TEXT NOT NULL,
        at          REAL NOT NULL,
        embedding   BLOB NOT NULL
    );
    CREATE INDEX memories_by_owner_time ON memories (owner, at);
    CREATE TABLE entities (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        owner       TEXT NOT NULL,
        key         TEXT NOT NULL,
        name        TEXT NOT NULL,
        session_id  TEXT NOT NULL,
        speaker     TEXT NOT NULL,
        at          REAL NOT NULL,
        UNIQUE (owner, key)
    );
    CREATE TABLE mentions (
        memory_id  INTEGER NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
        entity_id  INTEGER NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
        PRIMARY KEY (memory_id, entity_id)
    ) WITHOUT ROWID;
    CREATE INDEX mentions_by_entity ON mentions (entity_id);
    CREATE TABLE relations (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        owner       TEXT NOT NULL,
        subject_id  INTEGER NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
        predicate   TEXT NOT NULL,
        object_id   INTEGER NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
        session_id  TEXT NOT NULL,
        speaker     TEXT NOT NULL,
        at          REAL NOT NULL,
        UNIQUE (owner, subject_id, predicate, object_id)
    );
    CREATE INDEX relations_by_subject ON relations (subject_id);
    CREATE INDEX relations_by_object ON relations (object_id)
    """,
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)
"""The schema version this build writes."""

_KIND = DatabaseKind(
    "memory database",
    APPLICATION_ID,
    DatabaseErrors(failed=MemoryStoreError, closed=MemoryStoreError),
    advice="Choose another path for the memory database, or move this file away "
    "(for example `mv {path} {path}.broken`) to start with an empty one",
    busy_timeout_ms=0,  # one process owns the file: a second opener fails at once
    exclusive=True,
    secure_delete=True,
)
"""How the memory database is opened, and what its refusals raise."""

_MEMORY_COLUMNS = "id, owner, kind, text, importance, session_id, speaker, at"

_PRUNE_ORPHANS = (
    "DELETE FROM entities WHERE {scope} NOT EXISTS (SELECT 1 FROM mentions WHERE entity_id = entities.id) "
    "AND NOT EXISTS (SELECT 1 FROM relations WHERE subject_id = entities.id OR object_id = entities.id)"
)


def _owner(owner: AuraID | str) -> str:
    """The canonical string form of an owner AuraID; raises InvalidAuraID."""
    return str(owner if isinstance(owner, AuraID) else AuraID.parse(owner))


def _ids_json(ids: Collection[int]) -> str:
    return json.dumps(sorted(ids))


def _age_text(seconds: float) -> str:
    if seconds < 3600:
        return f"{max(seconds, 0.0) / 60:.0f} min"
    if seconds < DAY:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY:.1f} days"


class MemoryStore:
    """An agent's long-term memory in one SQLite file; use :meth:`open` (or ``with MemoryStore.open(...)``)."""

    def __init__(
        self,
        db: Database,
        *,
        embedder: Embedder,
        index: VectorIndex,
        retention: RetentionPolicy,
        weights: RecallWeights,
    ) -> None:
        """Wrap a database and index that :meth:`open` has prepared."""
        self._db = db
        self._embedder = embedder
        self._index = index
        self._retention = retention
        self._weights = weights

    def __repr__(self) -> str:
        return f"MemoryStore({str(self.path)!r}, embedder={self._embedder.name}/{self._embedder.dims})"

    # -- opening and closing -----------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        embedder: Embedder | None = None,
        retention: RetentionPolicy | None = None,
        weights: RecallWeights | None = None,
    ) -> MemoryStore:
        """Open (creating with mode 0600 if needed) the database at ``path`` and load its vectors.

        ``embedder`` defaults to :class:`~auralink.agents.memory.embedding.HashingEmbedder` and
        must be the one the file was created with. ``retention`` is what :meth:`apply_retention`
        enforces (nothing by default); ``weights`` the default of :meth:`recall`.
        """
        path = Path(path)
        embedder = HashingEmbedder() if embedder is None else embedder
        if not isinstance(embedder, Embedder):
            raise MemoryInputError("embedder must have name, dims and embed(texts)", field="embedder")
        dims = embedder.dims
        if isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0:
            raise MemoryInputError(f"the embedder's dims must be a positive int, not {dims!r}", field="embedder")
        retention = RetentionPolicy() if retention is None else retention
        weights = RecallWeights() if weights is None else weights
        if not isinstance(retention, RetentionPolicy):
            raise MemoryInputError("retention must be a RetentionPolicy", field="retention")
        if not isinstance(weights, RecallWeights):
            raise MemoryInputError("weights must be RecallWeights", field="weights")
        name = f"{embedder.name}/{dims}"

        def record_embedder(connection: sqlite3.Connection, migration: Migration) -> None:
            if migration.version == 1:
                connection.execute("INSERT INTO meta (key, value) VALUES ('embedder', ?)", (name,))

        db = Database.open(path, _KIND, _MIGRATIONS, on_migrate=record_embedder)
        try:
            _check_embedder(db, name)
            index = _load_index(db, dims)
        except BaseException:
            db.close()
            raise
        return cls(db, embedder=embedder, index=index, retention=retention, weights=weights)

    def close(self) -> None:
        """Close the database and zero the in-memory vectors; closing twice is allowed."""
        self._db.close()
        with self._db.lock:
            for owner in self._index.owners():
                self._index.drop(owner)

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._db.path

    @property
    def embedder(self) -> Embedder:
        """The embedder that makes this store's vectors."""
        return self._embedder

    @property
    def retention(self) -> RetentionPolicy:
        """The policy :meth:`apply_retention` enforces."""
        return self._retention

    # -- embedding ---------------------------------------------------------------------------

    def _vectors(self, drafts: Sequence[MemoryDraft]) -> npt.NDArray[np.float32]:
        """One unit row per draft: the given embedding, or the embedder's (texts embedded in one batch)."""
        dims = self._embedder.dims
        out = np.zeros((len(drafts), dims), dtype=np.float32)
        missing = [i for i, draft in enumerate(drafts) if draft.embedding is None]
        if missing:
            out[missing] = self._embed([drafts[i].text for i in missing])
        for i, draft in enumerate(drafts):
            if draft.embedding is not None:
                out[i] = _unit(_as_vector(draft.embedding, dims, "embedding"))
        return out

    def _embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        dims = self._embedder.dims
        raw = self._embedder.embed(texts)
        vectors = np.asarray(raw, dtype=np.float32)
        if vectors.shape != (len(texts), dims):
            raise MemoryInputError(
                f"the embedder {self._embedder.name!r} returned shape {vectors.shape}, not {(len(texts), dims)}",
                field="embedder",
            )
        if not np.all(np.isfinite(vectors)):
            raise MemoryInputError(f"the embedder {self._embedder.name!r} returned a non-finite value", "embedder")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        return unit

    # -- writing -----------------------------------------------------------------------------

    def remember(
        self,
        owner: AuraID | str,
        text: str,
        provenance: Provenance,
        *,
        kind: str = "fact",
        importance: float = 0.5,
        entities: Sequence[str] = (),
        embedding: npt.NDArray[np.float32] | Sequence[float] | None = None,
    ) -> Memory:
        """Store one memory of ``owner``; see :class:`~auralink.agents.memory.types.MemoryDraft` for the fields."""
        if isinstance(entities, str) or not isinstance(entities, Sequence):
            raise MemoryInputError("entities is a sequence of names, not one string", field="entities")
        draft = MemoryDraft(text, provenance, kind, importance, tuple(entities), embedding)
        return self.remember_many(owner, [draft])[0]

    def remember_many(self, owner: AuraID | str, drafts: Sequence[MemoryDraft]) -> list[Memory]:
        """Store several memories of ``owner`` in one transaction, embedding their texts in one batch."""
        owner_id = _owner(owner)
        if isinstance(drafts, MemoryDraft) or not all(isinstance(draft, MemoryDraft) for draft in drafts):
            raise MemoryInputError("drafts is a sequence of MemoryDraft", field="drafts")
        if not drafts:
            return []
        vectors = self._vectors(drafts)
        with self._db.write() as db:
            links = [
                {_upsert_entity(db, owner_id, name, draft.provenance) for name in draft.entities}
                | _linked_entities(db, owner_id, draft.text)
                for draft in drafts
            ]
            ids = _insert_memories(db, owner_id, drafts, vectors, links)
            self._db.on_commit(lambda: self._index_add(owner_id, ids, drafts, vectors, links))
            found = _load_memories(db, ids)
        return [found[memory_id] for memory_id in ids]

    def _index_add(
        self,
        owner: str,
        ids: list[int],
        drafts: Sequence[MemoryDraft],
        vectors: npt.NDArray[np.float32],
        links: Sequence[set[int]],
    ) -> None:
        self._index.add(
            owner,
            ids=np.asarray(ids, dtype=np.int64),
            vectors=vectors,
            at=np.asarray([draft.provenance.at for draft in drafts], dtype=np.float64),
            importance=np.asarray([draft.importance for draft in drafts], dtype=np.float32),
            kinds=[draft.kind for draft in drafts],
        )
        self._index.link(
            owner,
            [(memory_id, entity_id) for memory_id, linked in zip(ids, links, strict=True) for entity_id in linked],
        )

    def relate(
        self, owner: AuraID | str, subject: str, predicate: str, object_: str, provenance: Provenance
    ) -> Relation:
        """Record that ``subject predicate object_`` (``Bob works_on Falcon``), creating either entity if new.

        Asserting the same triple again updates its provenance to the latest assertion.
        """
        owner_id = _owner(owner)
        subject, object_ = check_entity_name(subject), check_entity_name(object_)
        predicate = check_name(predicate, "predicate")
        if not isinstance(provenance, Provenance):
            raise MemoryInputError("provenance must be a Provenance", field="provenance")
        with self._db.write() as db:
            subject_id = _upsert_entity(db, owner_id, subject, provenance)
            object_id = _upsert_entity(db, owner_id, object_, provenance)
            row = db.execute(
                "INSERT INTO relations (owner, subject_id, predicate, object_id, session_id, speaker, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (owner, subject_id, predicate, object_id) DO UPDATE SET "
                "session_id = excluded.session_id, speaker = excluded.speaker, at = excluded.at "
                "WHERE excluded.at >= relations.at RETURNING id",
                (owner_id, subject_id, predicate, object_id, *_provenance_row(provenance)),
            ).fetchall()
            if not row:  # an older assertion of a known triple: keep the newer provenance
                row = db.execute(
                    "SELECT id FROM relations WHERE owner = ? AND subject_id = ? AND predicate = ? AND object_id = ?",
                    (owner_id, subject_id, predicate, object_id),
                ).fetchall()
            found = _load_relations(db, owner_id, int(row[0][0]))
        return found[0]

    # -- reading -----------------------------------------------------------------------------

    def recall(
        self,
        owner: AuraID | str,
        query: str,
        now: float,
        *,
        limit: int = 10,
        kinds: Collection[str] | None = None,
        weights: RecallWeights | None = None,
    ) -> list[Recalled]:
        """The memories of ``owner`` that best answer ``query`` at wall-clock time ``now``, best first.

        A memory is returned only if it is similar enough to the query or linked to it through the
        graph (see :mod:`~auralink.agents.memory.scoring`); ``kinds`` keeps only those kinds.
        """
        owner_id = _owner(owner)
        check_query(query)
        now = check_time(now, "now")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RECALL_LIMIT:
            raise MemoryInputError(f"limit must be an int from 1 to {MAX_RECALL_LIMIT}, not {limit!r}", "limit")
        wanted = None if kinds is None else _kinds(kinds)
        weights = self._weights if weights is None else weights
        if not isinstance(weights, RecallWeights):
            raise MemoryInputError("weights must be RecallWeights", field="weights")
        vector = self._embed([query])[0]
        with self._db.read() as db:
            worth, why = _graph(db, owner_id, query, weights.hop_decay)
            hits = self._index.search(
                owner_id, vector, now, weights=weights, entity_worth=worth, limit=limit, kinds=wanted
            )
            found = _load_memories(db, [hit.memory_id for hit in hits])
        return [_recalled(found[hit.memory_id], hit, why, now, weights) for hit in hits]

    def get(self, owner: AuraID | str, memory_id: int) -> Memory:
        """The memory ``memory_id`` of ``owner``; :class:`~auralink.errors.MemoryNotFound` if it has none such."""
        owner_id, memory_id = _owner(owner), check_id(memory_id)
        with self._db.read() as db:
            found = _load_memories(db, [memory_id]).get(memory_id)
        if found is None or found.owner != owner_id:
            raise MemoryNotFound(f"identity {owner_id[:10]}... has no memory {memory_id}", memory_id)
        return found

    def count(self, owner: AuraID | str | None = None) -> int:
        """How many memories ``owner`` has (every identity's, if None)."""
        with self._db.lock:
            return len(self._index) if owner is None else self._index.count(_owner(owner))

    def identities(self) -> list[str]:
        """Every owner AuraID with at least one memory, entity or relation, sorted."""
        with self._db.read() as db:
            rows = db.execute("SELECT owner FROM memories UNION SELECT owner FROM entities ORDER BY 1").fetchall()
        return [str(row[0]) for row in rows]

    def entities(self, owner: AuraID | str) -> list[Entity]:
        """The entities of ``owner``'s graph, by id."""
        owner_id = _owner(owner)
        with self._db.read() as db:
            rows = db.execute(
                "SELECT id, name, session_id, speaker, at FROM entities WHERE owner = ? ORDER BY id", (owner_id,)
            ).fetchall()
        return [Entity(int(row[0]), owner_id, str(row[1]), _provenance(row[2:])) for row in rows]

    def relations(self, owner: AuraID | str) -> list[Relation]:
        """The relations of ``owner``'s graph, by id."""
        owner_id = _owner(owner)
        with self._db.read() as db:
            return _load_relations(db, owner_id)

    # -- forgetting --------------------------------------------------------------------------

    def forget(self, owner: AuraID | str, memory_id: int) -> None:
        """Delete one memory of ``owner`` (and entities only it named), leaving no trace of its text."""
        owner_id, memory_id = _owner(owner), check_id(memory_id)
        with self._db.write(truncate_wal=True) as db:
            gone = db.execute(
                "DELETE FROM memories WHERE id = ? AND owner = ? RETURNING id", (memory_id, owner_id)
            ).fetchall()
            if not gone:
                raise MemoryNotFound(f"identity {owner_id[:10]}... has no memory {memory_id}", memory_id)
            if db.execute(_PRUNE_ORPHANS.format(scope="owner = ? AND"), (owner_id,)).rowcount > 0:
                _rebuild_indexes(db, "entities", "relations")
            self._db.on_commit(lambda: self._index.remove(owner_id, [memory_id]))

    def apply_retention(self, now: float) -> RetentionReport:
        """Forget what the retention policy says is too old or too many at wall-clock time ``now``."""
        now = check_time(now, "now")
        policy = self._retention
        removed: dict[str, list[int]] = {}
        with self._db.write(truncate_wal=True) as db:
            for rule in policy.rules:
                where, arguments = ("kind = ?", [rule.kind]) if rule.kind is not None else ("1", [])
                statements: list[tuple[str, list[Any]]] = []
                if rule.max_age is not None:
                    statements.append(
                        (
                            f"DELETE FROM memories WHERE {where} AND at < ? RETURNING owner, id",
                            [*arguments, now - rule.max_age],
                        )
                    )
                if rule.max_items is not None:
                    statements.append(
                        (
                            "DELETE FROM memories WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER "
                            f"(PARTITION BY owner ORDER BY at DESC, id DESC) AS rank FROM memories WHERE {where}) "
                            "WHERE rank > ?) RETURNING owner, id",
                            [*arguments, rule.max_items],
                        )
                    )
                for sql, values in statements:
                    for owner_id, memory_id in db.execute(sql, values).fetchall():
                        removed.setdefault(str(owner_id), []).append(int(memory_id))
            relations = 0
            if policy.relation_max_age is not None:
                relations = db.execute("DELETE FROM relations WHERE at < ?", (now - policy.relation_max_age,)).rowcount
            entities = db.execute(_PRUNE_ORPHANS.format(scope=""), ()).rowcount
            if relations > 0 or entities > 0:
                _rebuild_indexes(db, "entities", "relations")
            self._db.on_commit(lambda: [self._index.remove(owner_id, ids) for owner_id, ids in removed.items()])
        return RetentionReport(sum(len(ids) for ids in removed.values()), max(relations, 0), max(entities, 0))

    def forget_identity(self, owner: AuraID | str) -> int:
        """Delete everything of ``owner``: memories, entities, relations, vectors; return how many memories.

        The rows are overwritten with zeros (``secure_delete``), the WAL is checkpointed and
        truncated, and the in-memory vectors are zeroed, so no text of the identity remains in the
        database file, its WAL, or this process's index.
        """
        owner_id = _owner(owner)
        with self._db.write(truncate_wal=True) as db:
            count = db.execute("DELETE FROM memories WHERE owner = ?", (owner_id,)).rowcount
            db.execute("DELETE FROM relations WHERE owner = ?", (owner_id,))
            db.execute("DELETE FROM entities WHERE owner = ?", (owner_id,))
            _rebuild_indexes(db, "memories", "entities", "relations")
            self._db.on_commit(lambda: self._index.drop(owner_id))
        return max(count, 0)

    # -- export and import -------------------------------------------------------------------

    def export_identity(self, owner: AuraID | str, *, embeddings: bool = True) -> dict[str, Any]:
        """Everything the store holds about ``owner``, as a JSON-ready dict.

        The format is described in :mod:`~auralink.agents.memory.export`; ``embeddings=False``
        leaves the vectors out (an import then embeds the texts again).
        """
        owner_id = _owner(owner)
        with self._db.read() as db:
            entities = [
                {"id": int(row[0]), "name": str(row[1]), "provenance": provenance_json(_provenance(row[2:]))}
                for row in db.execute(
                    "SELECT id, name, session_id, speaker, at FROM entities WHERE owner = ? ORDER BY id", (owner_id,)
                )
            ]
            relations = [
                {
                    "id": int(row[0]),
                    "subject": int(row[1]),
                    "predicate": str(row[2]),
                    "object": int(row[3]),
                    "provenance": provenance_json(_provenance(row[4:])),
                }
                for row in db.execute(
                    "SELECT id, subject_id, predicate, object_id, session_id, speaker, at FROM relations "
                    "WHERE owner = ? ORDER BY id",
                    (owner_id,),
                )
            ]
            mentions: dict[int, list[int]] = {}
            for memory_id, entity_id in db.execute(
                "SELECT m.memory_id, m.entity_id FROM mentions m JOIN memories ON memories.id = m.memory_id "
                "WHERE memories.owner = ? ORDER BY m.memory_id, m.entity_id",
                (owner_id,),
            ):
                mentions.setdefault(int(memory_id), []).append(int(entity_id))
            memories = [
                {
                    "id": int(row[0]),
                    "kind": str(row[1]),
                    "text": str(row[2]),
                    "importance": float(row[3]),
                    "provenance": provenance_json(_provenance(row[4:7])),
                    "entities": mentions.get(int(row[0]), []),
                    "embedding": vector_text(bytes(row[7])) if embeddings else None,
                }
                for row in db.execute(
                    "SELECT id, kind, text, importance, session_id, speaker, at, embedding FROM memories "
                    "WHERE owner = ? ORDER BY id",
                    (owner_id,),
                )
            ]
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "owner": owner_id,
            "embedder": {"name": self._embedder.name, "dims": self._embedder.dims},
            "entities": entities,
            "relations": relations,
            "memories": memories,
        }

    def import_identity(self, document: object) -> int:
        """Add what an :meth:`export_identity` document holds to its owner; return how many memories.

        All or nothing. Entities merge with the owner's by name; memories and relations are added
        (a relation already known keeps the newer provenance). Vectors are reused when the document
        was made with this store's embedder, and recomputed from the text otherwise.
        """
        parsed = parse_export(document)
        owner_id = _owner(parsed.owner)
        reuse = parsed.embedder == f"{self._embedder.name}/{self._embedder.dims}"
        drafts = [draft for _, draft, _, _ in parsed.memories]
        vectors = np.zeros((len(drafts), self._embedder.dims), dtype=np.float32)
        missing = [i for i, (_, _, _, vector) in enumerate(parsed.memories) if vector is None or not reuse]
        if missing:
            vectors[missing] = self._embed([drafts[i].text for i in missing])
        for i, (_, _, _, vector) in enumerate(parsed.memories):
            if vector is not None and reuse:
                vectors[i] = _unit(vector)
        with self._db.write() as db:
            entity_ids = {
                old: _upsert_entity(db, owner_id, name, provenance) for old, name, provenance in parsed.entities
            }
            for _, subject, predicate, obj, provenance in parsed.relations:
                db.execute(
                    "INSERT INTO relations (owner, subject_id, predicate, object_id, session_id, speaker, at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (owner, subject_id, predicate, object_id) DO UPDATE "
                    "SET session_id = excluded.session_id, speaker = excluded.speaker, at = excluded.at "
                    "WHERE excluded.at > relations.at",
                    (owner_id, entity_ids[subject], predicate, entity_ids[obj], *_provenance_row(provenance)),
                )
            links = [{entity_ids[ref] for ref in refs} for _, _, refs, _ in parsed.memories]
            ids = _insert_memories(db, owner_id, drafts, vectors, links)
            self._db.on_commit(lambda: self._index_add(owner_id, ids, drafts, vectors, links))
        return len(ids)


# ---------------------------------------------------------------------------------------------
# SQL helpers (called with the lock held, inside a transaction)


def _rebuild_indexes(db: sqlite3.Connection, *tables: str) -> None:
    """Rebuild the indexes of ``tables``, so that no interior page keeps a deleted key as a divider.

    A b-tree's interior pages hold copies of keys (owner AuraIDs, entity names, predicates) to
    separate their children, and deleting the row a key came from does not rewrite them. REINDEX
    writes every index anew; with ``secure_delete`` the pages of the old ones are zeroed.
    """
    for table in tables:
        db.execute(f"REINDEX {table}")  # the names are ours, never the caller's


def _provenance_row(provenance: Provenance) -> tuple[str, str, float]:
    return provenance.session_id, provenance.speaker, provenance.at


def _provenance(row: Sequence[Any]) -> Provenance:
    return Provenance(str(row[0]), str(row[1]), float(row[2]))


def _kinds(kinds: Collection[str]) -> frozenset[str]:
    if isinstance(kinds, str):
        raise MemoryInputError("kinds is a collection of kind names, not one string", field="kinds")
    return frozenset(check_kind(kind) for kind in kinds)


def _as_vector(value: object, dims: int, what: str) -> npt.NDArray[np.float32]:
    try:
        vector = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise MemoryInputError(f"{what} must be a sequence of {dims} numbers", field=what) from exc
    if vector.shape != (dims,):
        raise MemoryInputError(f"{what} must have shape ({dims},) for this store, not {vector.shape}", field=what)
    if not np.all(np.isfinite(vector)):
        raise MemoryInputError(f"{what} holds a non-finite number", field=what)
    return vector


def _unit(vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else vector.astype(np.float32)


def _upsert_entity(db: sqlite3.Connection, owner: str, name: str, provenance: Provenance) -> int:
    """The id of ``owner``'s entity called ``name`` (by key), created with this provenance if new."""
    key = entity_key(name)
    rows = db.execute(
        "INSERT INTO entities (owner, key, name, session_id, speaker, at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (owner, key) DO NOTHING RETURNING id",
        (owner, key, name, *_provenance_row(provenance)),
    ).fetchall()
    if not rows:
        rows = db.execute("SELECT id FROM entities WHERE owner = ? AND key = ?", (owner, key)).fetchall()
    return int(rows[0][0])


def _linked_entities(db: sqlite3.Connection, owner: str, text: str) -> set[int]:
    """The ids of ``owner``'s entities whose names appear in ``text``."""
    keys = mentioned_keys(text)
    if not keys:
        return set()
    rows = db.execute(
        "SELECT id FROM entities WHERE owner = ? AND key IN (SELECT value FROM json_each(?))",
        (owner, json.dumps(keys)),
    ).fetchall()
    return {int(row[0]) for row in rows}


def _insert_memories(
    db: sqlite3.Connection,
    owner: str,
    drafts: Sequence[MemoryDraft],
    vectors: npt.NDArray[np.float32],
    links: Sequence[set[int]],
) -> list[int]:
    ids: list[int] = []
    for draft, vector, entity_ids in zip(drafts, vectors, links, strict=True):
        row = db.execute(
            "INSERT INTO memories (owner, kind, text, importance, session_id, speaker, at, embedding) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                owner,
                draft.kind,
                draft.text,
                draft.importance,
                *_provenance_row(draft.provenance),
                vector.astype("<f4").tobytes(),
            ),
        ).fetchall()
        memory_id = int(row[0][0])
        db.executemany(
            "INSERT INTO mentions (memory_id, entity_id) VALUES (?, ?)",
            [(memory_id, entity_id) for entity_id in sorted(entity_ids)],
        )
        ids.append(memory_id)
    return ids


def _load_memories(db: sqlite3.Connection, ids: Sequence[int]) -> dict[int, Memory]:
    if not ids:
        return {}
    wanted = _ids_json(ids)
    names: dict[int, list[str]] = {}
    for memory_id, name in db.execute(
        "SELECT m.memory_id, e.name FROM mentions m JOIN entities e ON e.id = m.entity_id "
        "WHERE m.memory_id IN (SELECT value FROM json_each(?)) ORDER BY e.name",
        (wanted,),
    ):
        names.setdefault(int(memory_id), []).append(str(name))
    found: dict[int, Memory] = {}
    for row in db.execute(
        f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE id IN (SELECT value FROM json_each(?))", (wanted,)
    ):
        memory_id = int(row[0])
        found[memory_id] = Memory(
            id=memory_id,
            owner=str(row[1]),
            kind=str(row[2]),
            text=str(row[3]),
            importance=float(row[4]),
            provenance=_provenance(row[5:8]),
            entities=tuple(names.get(memory_id, ())),
        )
    return found


def _load_relations(db: sqlite3.Connection, owner: str, relation_id: int | None = None) -> list[Relation]:
    sql = (
        "SELECT r.id, s.name, r.predicate, o.name, r.session_id, r.speaker, r.at FROM relations r "
        "JOIN entities s ON s.id = r.subject_id JOIN entities o ON o.id = r.object_id WHERE r.owner = ?"
    )
    arguments: tuple[object, ...] = (owner,)
    if relation_id is not None:
        sql += " AND r.id = ?"
        arguments += (relation_id,)
    rows = db.execute(sql + " ORDER BY r.id", arguments).fetchall()
    return [Relation(int(row[0]), owner, str(row[1]), str(row[2]), str(row[3]), _provenance(row[4:])) for row in rows]


def _graph(db: sqlite3.Connection, owner: str, query: str, hop_decay: float) -> tuple[dict[int, float], dict[str, str]]:
    """What mentioning each entity is worth for ``query``, and why, by entity key.

    The owner's entities named in the query are worth 1; the other ends of their relations are
    worth ``hop_decay``.
    """
    keys = mentioned_keys(query)
    if not keys:
        return {}, {}
    seeds = db.execute(
        "SELECT id, key, name FROM entities WHERE owner = ? AND key IN (SELECT value FROM json_each(?))",
        (owner, json.dumps(keys)),
    ).fetchall()
    worth: dict[int, float] = {int(entity_id): 1.0 for entity_id, _, _ in seeds}
    why: dict[str, str] = {str(key): f"mentions {name}, named in the query" for _, key, name in seeds}
    if not seeds or hop_decay <= 0:
        return worth, why
    seed_ids = _ids_json(worth)
    for subject_id, subject_key, subject, predicate, object_id, object_key, obj in db.execute(
        "SELECT r.subject_id, s.key, s.name, r.predicate, r.object_id, o.key, o.name FROM relations r "
        "JOIN entities s ON s.id = r.subject_id JOIN entities o ON o.id = r.object_id "
        "WHERE r.owner = ? AND (r.subject_id IN (SELECT value FROM json_each(?)) "
        "OR r.object_id IN (SELECT value FROM json_each(?))) ORDER BY r.id",
        (owner, seed_ids, seed_ids),
    ):
        for neighbour, key, name in ((int(subject_id), subject_key, subject), (int(object_id), object_key, obj)):
            if neighbour not in worth:
                worth[neighbour] = hop_decay
                why[str(key)] = f"mentions {name} ({subject} {predicate} {obj})"
    return worth, why


def _recalled(memory: Memory, hit: Hit, why: dict[str, str], now: float, weights: RecallWeights) -> Recalled:
    reasons: list[str] = []
    if hit.similarity >= weights.min_similarity:
        reasons.append(f"similarity {hit.similarity:.2f}")
    named = [why[key] for key in (entity_key(name) for name in memory.entities) if key in why]
    reasons.extend(sorted(named, key=lambda reason: (", named in the query" not in reason, reason)))
    reasons.append(f"said {_age_text(now - memory.provenance.at)} ago (recency {hit.recency:.2f})")
    return Recalled(memory, hit.score, hit.similarity, hit.graph, hit.recency, tuple(reasons))


# ---------------------------------------------------------------------------------------------
# Opening


def _check_embedder(db: Database, embedder: str) -> None:
    """Refuse a file whose vectors another embedder made; takes the write lock, so nobody else opens the file."""
    with db.write() as connection:
        row = connection.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
    stored = "" if row is None else str(row[0])
    if stored != embedder:
        raise EmbedderMismatch(
            f"{db.path}: its vectors were made by the embedder {stored!r}, not {embedder!r}; open it with the same "
            "embedder, or export each identity and import it into a new file",
            stored,
            embedder,
        )


def _load_index(db: Database, dims: int) -> VectorIndex:
    """Read every stored vector, and every mention, into a fresh index, a chunk at a time."""
    index = VectorIndex(dims)
    width = 4 * dims
    with db.read() as connection:
        cursor = connection.execute(
            "SELECT owner, id, kind, at, importance, embedding FROM memories ORDER BY owner, id"
        )
        while rows := cursor.fetchmany(_LOAD_CHUNK):
            for owner, group in itertools.groupby(rows, key=lambda row: str(row[0])):
                chunk = list(group)
                blobs = [bytes(row[5]) for row in chunk]
                if any(len(blob) != width for blob in blobs):
                    raise db.corrupt(f"a stored vector does not have {dims} dimensions")
                index.add(
                    owner,
                    ids=np.asarray([row[1] for row in chunk], dtype=np.int64),
                    vectors=np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(chunk), dims),
                    at=np.asarray([row[3] for row in chunk], dtype=np.float64),
                    importance=np.asarray([row[4] for row in chunk], dtype=np.float32),
                    kinds=[str(row[2]) for row in chunk],
                )
        cursor = connection.execute(
            "SELECT memories.owner, m.memory_id, m.entity_id FROM mentions m "
            "JOIN memories ON memories.id = m.memory_id ORDER BY memories.owner, m.memory_id, m.entity_id"
        )
        while rows := cursor.fetchmany(_LOAD_CHUNK):
            for owner, group in itertools.groupby(rows, key=lambda row: str(row[0])):
                index.link(owner, [(int(row[1]), int(row[2])) for row in group])
    return index
