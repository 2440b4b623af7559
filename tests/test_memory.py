"""The agent memory store on real SQLite files: ranking, provenance, retention, export, deletion, persistence.

Every test is deterministic: owners come from fixed seeds, time is an explicit wall-clock ``now``
(``T0`` plus whole days), Hypothesis runs derandomized (see conftest.py), and the default embedder
is a pure function of the text.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import auralink.agents.memory
import auralink.agents.memory.store as store_module
from auralink.agents.memory import (
    Embedder,
    HashingEmbedder,
    MemoryDraft,
    MemoryStore,
    Provenance,
    RecallWeights,
    RetentionPolicy,
    RetentionRule,
)
from auralink.agents.memory.scoring import DAY
from auralink.errors import (
    AgentMemoryError,
    EmbedderMismatch,
    InvalidAuraID,
    LocalProtocolError,
    MemoryInputError,
    MemoryNotFound,
    MemoryStoreError,
)
from auralink.identity import Identity
from tests.test_sqlite import SPOILED, assert_refused_untouched, spoil

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_800_000_000.0
ALICE = str(Identity.from_seed(b"\x01" * 32).aura_id)
BOB_ID = str(Identity.from_seed(b"\x02" * 32).aura_id)
WEIGHTS = RecallWeights()


def said(day: float = 0.0, session: str = "standup-1", speaker: str = "@carol.aura") -> Provenance:
    return Provenance(session_id=session, speaker=speaker, at=T0 + day * DAY)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with MemoryStore.open(tmp_path / "memory.db") as opened:
        yield opened


def texts(results: Sequence[Any]) -> list[str]:
    return [result.memory.text for result in results]


# -- ranking: each component can decide ----------------------------------------------------------


def test_similarity_decides_when_time_graph_and_importance_are_equal(store: MemoryStore) -> None:
    for text in (
        "The cafeteria serves pizza on Tuesdays.",
        "The quarterly budget review moved to Thursday.",
        "Parking permits renew in January.",
    ):
        store.remember(ALICE, text, said())
    results = store.recall(ALICE, "When is the budget review?", now=T0 + DAY)
    assert texts(results) == ["The quarterly budget review moved to Thursday."]
    assert results[0].similarity > 0.3
    assert results[0].graph == 0.0
    assert results[0].reasons[0].startswith("similarity ")


def test_graph_neighbourhood_decides_between_equally_similar_memories(store: MemoryStore) -> None:
    # Same words about the launch, same time and importance; only the project differs, and only
    # Falcon is linked to Bob (the entity named in the query) by a relation.
    store.relate(ALICE, "Bob", "works_on", "Falcon", said())
    store.remember(ALICE, "Launch update: Heron slipped to March.", said(), entities=["Heron"])
    store.remember(ALICE, "Launch update: Falcon slipped to March.", said(), entities=["Falcon"])
    results = store.recall(ALICE, "Any launch update for Bob?", now=T0 + DAY)
    assert texts(results)[0] == "Launch update: Falcon slipped to March."
    assert results[0].graph == pytest.approx(WEIGHTS.hop_decay)
    assert "mentions Falcon (Bob works_on Falcon)" in results[0].reasons
    assert results[1].graph == 0.0
    assert abs(results[0].similarity - results[1].similarity) < 0.15  # the graph term (0.125) is what separates them


def test_graph_recalls_a_memory_that_shares_no_words_with_the_query(store: MemoryStore) -> None:
    store.relate(ALICE, "Bob", "works_on", "Falcon", said())
    store.remember(ALICE, "Falcon slipped to March.", said(), entities=["Falcon"])
    store.remember(ALICE, "The cafeteria serves pizza.", said())
    results = store.recall(ALICE, "What is Bob doing?", now=T0)
    assert texts(results) == ["Falcon slipped to March."]
    assert results[0].similarity < WEIGHTS.min_similarity
    # Without the hop, nothing links the memory to the query any more.
    assert store.recall(ALICE, "What is Bob doing?", now=T0, weights=RecallWeights(hop_decay=0.0)) == []


def test_an_entity_named_in_the_query_links_with_full_weight(store: MemoryStore) -> None:
    store.remember(ALICE, "Ship it on Friday.", said(), entities=["Project Falcon"])
    # Case, punctuation and spacing do not matter; the entity's words do.
    (result,) = store.recall(ALICE, "news about PROJECT   falcon?", now=T0)
    assert result.graph == 1.0
    assert "mentions Project Falcon, named in the query" in result.reasons


def test_known_entities_named_in_a_text_are_linked_without_being_listed(store: MemoryStore) -> None:
    store.remember(ALICE, "Dana joined the team.", said(), entities=["Dana"])
    memory = store.remember(ALICE, "Budget approved; dana will track it.", said())
    assert memory.entities == ("Dana",)


def test_recency_decides_between_equally_relevant_memories(store: MemoryStore) -> None:
    # The newer memory gets the lower id, so the tie-break by id cannot be what ranks it first.
    store.remember(ALICE, "Standup moved to 9:30.", said(day=29, session="week-5"))
    store.remember(ALICE, "Standup moved to 9:30.", said(day=0, session="week-1"))
    results = store.recall(ALICE, "When is standup?", now=T0 + 30 * DAY)
    assert [r.memory.provenance.session_id for r in results] == ["week-5", "week-1"]
    assert results[0].similarity == pytest.approx(results[1].similarity)
    assert results[0].recency == pytest.approx(2 ** (-1 / 7))
    assert results[1].recency == pytest.approx(2 ** (-30 / 7))


def test_importance_nudges_between_otherwise_equal_memories(store: MemoryStore) -> None:
    store.remember(ALICE, "Deploys freeze on Friday.", said(), importance=0.1)
    store.remember(ALICE, "Deploys freeze on Friday.", said(), importance=0.9)
    results = store.recall(ALICE, "deploys freeze", now=T0)
    assert [r.memory.importance for r in results] == [0.9, 0.1]


def test_score_is_the_documented_weighted_sum(store: MemoryStore) -> None:
    store.relate(ALICE, "Bob", "works_on", "Falcon", said())
    store.remember(ALICE, "Bob demoed Falcon search.", said(day=-3), importance=0.7, entities=["Bob", "Falcon"])
    weights = RecallWeights(similarity=0.5, graph=0.3, recency=0.15, importance=0.05, half_life=2 * DAY)
    (result,) = store.recall(ALICE, "Bob search demo", now=T0, weights=weights)
    # Bob is named (worth 1), Falcon is his neighbour (0.5): noisy-or 1 - (1 - 1)(1 - 0.5) = 1.
    assert result.graph == 1.0
    assert result.recency == pytest.approx(2 ** (-3 / 2))
    expected = 0.5 * max(result.similarity, 0) + 0.3 * 1.0 + 0.15 * result.recency + 0.05 * 0.7
    assert result.score == pytest.approx(expected)


def test_two_neighbours_combine_as_a_noisy_or(store: MemoryStore) -> None:
    store.relate(ALICE, "Bob", "works_on", "Falcon", said())
    store.relate(ALICE, "Bob", "works_on", "Heron", said())
    store.remember(ALICE, "Falcon and Heron share a backend.", said(), entities=["Falcon", "Heron"])
    (result,) = store.recall(ALICE, "Bob?", now=T0)
    assert result.graph == pytest.approx(1 - (1 - 0.5) ** 2)


def test_irrelevant_memories_are_not_returned_however_new(store: MemoryStore) -> None:
    store.remember(ALICE, "The cafeteria serves pizza on Tuesdays.", said(day=10))
    assert store.recall(ALICE, "quarterly budget review", now=T0 + 10 * DAY) == []
    assert store.recall(ALICE, "   ", now=T0) == []


def test_recall_sees_only_the_owners_memories_and_graph(store: MemoryStore) -> None:
    store.remember(BOB_ID, "Falcon ships on Friday.", said(), entities=["Falcon"])
    store.relate(BOB_ID, "Dana", "works_on", "Falcon", said())
    store.remember(ALICE, "Heron ships on Monday.", said(), entities=["Heron"])
    assert texts(store.recall(ALICE, "what ships, Falcon? ask Dana", now=T0)) == ["Heron ships on Monday."]
    assert texts(store.recall(BOB_ID, "Falcon", now=T0)) == ["Falcon ships on Friday."]


def test_kinds_filter(store: MemoryStore) -> None:
    store.remember(ALICE, "Bob prefers short standups.", said(), kind="preference")
    store.remember(ALICE, "We decided on short standups.", said(), kind="decision")
    results = store.recall(ALICE, "short standups", now=T0, kinds=["decision"])
    assert [r.memory.kind for r in results] == ["decision"]
    assert store.recall(ALICE, "short standups", now=T0, kinds={"action-item"}) == []


def test_limit_keeps_the_best(store: MemoryStore) -> None:
    store.remember_many(ALICE, [MemoryDraft(f"Release note {i}: search got faster.", said(day=i)) for i in range(30)])
    results = store.recall(ALICE, "search faster release", now=T0 + 30 * DAY, limit=5)
    assert len(results) == 5
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert {r.memory.provenance.at for r in results} == {T0 + d * DAY for d in range(25, 30)}


# -- provenance ------------------------------------------------------------------------------------


def test_provenance_of_memories_entities_and_relations(store: MemoryStore) -> None:
    first = Provenance("call-7", BOB_ID, T0)  # a speaker may be an AuraID string...
    later = Provenance("call-9", "Dana (guest)", T0 + DAY)  # ...or a display name
    memory = store.remember(ALICE, "Falcon ships Friday.", first, kind="decision", importance=0.8, entities=["Falcon"])
    store.relate(ALICE, "Dana", "leads", "Falcon", first)
    store.relate(ALICE, "Dana", "leads", "Falcon", later)
    store.relate(ALICE, "Dana", "leads", "Falcon", first)  # an older assertion does not overwrite the newer one
    got = store.get(ALICE, memory.id)
    assert got == memory
    assert (got.owner, got.kind, got.importance, got.provenance) == (ALICE, "decision", 0.8, first)
    (recalled,) = store.recall(ALICE, "Falcon", now=T0 + 2 * DAY)
    assert recalled.memory.provenance == first
    assert {e.name: e.provenance for e in store.entities(ALICE)} == {"Falcon": first, "Dana": first}
    (relation,) = store.relations(ALICE)
    assert (relation.subject, relation.predicate, relation.object, relation.provenance) == (
        "Dana",
        "leads",
        "Falcon",
        later,
    )


# -- retention -------------------------------------------------------------------------------------


def test_retention_by_age_count_and_kind(tmp_path: Path) -> None:
    policy = RetentionPolicy(
        rules=(
            RetentionRule(kind="highlight", max_age=7 * DAY),
            RetentionRule(kind="preference", max_items=2),
            RetentionRule(max_items=6),
        ),
        relation_max_age=30 * DAY,
    )
    with MemoryStore.open(tmp_path / "memory.db", retention=policy) as store:
        for owner in (ALICE, BOB_ID):
            for day in range(4):
                store.remember(owner, f"Highlight of day {day}: demo went well.", said(day=day * 5), kind="highlight")
                store.remember(owner, f"Prefers tea, said on day {day}.", said(day=day), kind="preference")
        store.remember(ALICE, "Decision: Zed owns billing.", said(day=19), kind="decision", entities=["Zed"])
        store.relate(ALICE, "Zed", "reports_to", "Yara", said(day=0))
        assert store.count(ALICE) == 9

        report = store.apply_retention(now=T0 + 20 * DAY)

        # Highlights of days 0, 5 and 10 are over 7 days old; preferences keep the 2 most recent
        # per owner; then at most 6 memories per owner. The Zed -> Yara relation is 20 days old.
        assert report.memories == 2 * (3 + 2)
        assert report.relations == 0
        left = sorted(m.text for m in _all(store, ALICE))
        assert left == [
            "Decision: Zed owns billing.",
            "Highlight of day 3: demo went well.",
            "Prefers tea, said on day 2.",
            "Prefers tea, said on day 3.",
        ]
        assert store.count(ALICE) == 4 and store.count(BOB_ID) == 3

        # At day 50 the day-15 highlights are too old, and so is the relation; then Yara is named by nothing.
        report = store.apply_retention(now=T0 + 50 * DAY)
        assert (report.memories, report.relations, report.entities) == (2, 1, 1)
        assert [e.name for e in store.entities(ALICE)] == ["Zed"]
        assert store.recall(ALICE, "Yara", now=T0 + 50 * DAY) == []

        # Recall agrees with the store: no highlight is left to find.
        assert store.recall(ALICE, "Highlight of day 3: demo", now=T0 + 50 * DAY, kinds=["highlight"]) == []
        assert store.apply_retention(now=T0 + 50 * DAY) == type(report)(0, 0, 0)


def _all(store: MemoryStore, owner: str) -> list[Any]:
    document = store.export_identity(owner)
    return [store.get(owner, m["id"]) for m in document["memories"]]


def test_retention_with_no_rules_keeps_everything(store: MemoryStore) -> None:
    store.remember(ALICE, "Old but kept.", said(day=-1000))
    assert store.apply_retention(now=T0).memories == 0
    assert store.count(ALICE) == 1


def test_forget_one_memory_and_the_entities_only_it_named(store: MemoryStore) -> None:
    kept = store.remember(ALICE, "Falcon ships Friday.", said(), entities=["Falcon"])
    gone = store.remember(ALICE, "Zed joined Falcon.", said(), entities=["Zed"])
    assert set(gone.entities) == {"Falcon", "Zed"}
    store.forget(ALICE, gone.id)
    assert [e.name for e in store.entities(ALICE)] == ["Falcon"]
    assert texts(store.recall(ALICE, "Falcon Zed", now=T0)) == [kept.text]
    with pytest.raises(MemoryNotFound):
        store.get(ALICE, gone.id)
    with pytest.raises(MemoryNotFound):
        store.forget(ALICE, gone.id)
    with pytest.raises(MemoryNotFound):  # another identity's memory is not found either
        store.forget(BOB_ID, kept.id)


# -- export and import -----------------------------------------------------------------------------


def _populate(store: MemoryStore, owner: str) -> None:
    store.relate(owner, "Bob", "works_on", "Falcon", said(day=1, session="org"))
    store.relate(owner, "Bob", "reports to", "Dana", said(day=2, session="org"))
    store.remember(owner, "Falcon ships Friday.", said(day=3), kind="decision", importance=0.9, entities=["Falcon"])
    store.remember(owner, "Bob prefers written updates.", said(day=4, speaker=BOB_ID), kind="preference")
    store.remember(owner, "Zoë said «ça marche» 👍", said(day=5, speaker="Zoë"), kind="highlight")


def _canonical(document: dict[str, Any]) -> dict[str, Any]:
    """The document with store ids replaced by names, so two stores' exports can be compared."""
    names = {e["id"]: e["name"] for e in document["entities"]}
    out = dict(document)
    out["entities"] = sorted((e["name"], json.dumps(e["provenance"])) for e in document["entities"])
    out["relations"] = sorted(
        (names[r["subject"]], r["predicate"], names[r["object"]], json.dumps(r["provenance"]))
        for r in document["relations"]
    )
    out["memories"] = [
        {**{k: v for k, v in m.items() if k != "id"}, "entities": sorted(names[e] for e in m["entities"])}
        for m in document["memories"]
    ]
    return out


def test_export_has_everything_about_one_identity_and_nothing_else(store: MemoryStore) -> None:
    _populate(store, ALICE)
    store.remember(BOB_ID, "Bob's own secret.", said())
    document = json.loads(json.dumps(store.export_identity(ALICE)))  # JSON-ready
    assert document["format"] == "auralink-memory-export" and document["version"] == 1
    assert document["owner"] == ALICE
    assert document["embedder"] == {"name": "hashing-v1", "dims": 256}
    assert [m["text"] for m in document["memories"]] == [
        "Falcon ships Friday.",
        "Bob prefers written updates.",
        "Zoë said «ça marche» 👍",
    ]
    assert sorted(e["name"] for e in document["entities"]) == ["Bob", "Dana", "Falcon"]
    assert len(document["relations"]) == 2
    assert document["memories"][1]["provenance"] == {"session_id": "standup-1", "speaker": BOB_ID, "at": T0 + 4 * DAY}
    assert "secret" not in json.dumps(document)


def test_export_import_round_trip(tmp_path: Path) -> None:
    with MemoryStore.open(tmp_path / "a.db") as source:
        _populate(source, ALICE)
        exported = json.loads(json.dumps(source.export_identity(ALICE)))
        expected = [(r.memory.text, r.score) for r in source.recall(ALICE, "Bob Falcon updates", now=T0 + 9 * DAY)]
    with MemoryStore.open(tmp_path / "b.db") as target:
        target.remember(ALICE, "Something already here.", said(day=-1))  # ids in b.db differ from a.db's
        assert target.import_identity(exported) == 3
        target.forget(ALICE, 1)
        again = target.export_identity(ALICE)
        assert _canonical(again) == _canonical(exported)
        got = [(r.memory.text, r.score) for r in target.recall(ALICE, "Bob Falcon updates", now=T0 + 9 * DAY)]
        assert [text for text, _ in got] == [text for text, _ in expected]
        assert [score for _, score in got] == pytest.approx([score for _, score in expected])


def test_import_without_embeddings_embeds_the_text_again(tmp_path: Path) -> None:
    with MemoryStore.open(tmp_path / "a.db") as source:
        _populate(source, ALICE)
        bare = source.export_identity(ALICE, embeddings=False)
        full = source.export_identity(ALICE)
    assert all(m["embedding"] is None for m in bare["memories"])
    with MemoryStore.open(tmp_path / "b.db") as target:
        target.import_identity(bare)
        assert _canonical(target.export_identity(ALICE)) == _canonical(full)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(format="something-else"), "format"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(owner="not-an-aura-id"), None),
        (lambda d: d["memories"][1].pop("text"), "memories[1].text"),
        (lambda d: d["memories"][0].update(text="  "), "memories[0].text"),
        (lambda d: d["memories"][0]["provenance"].update(at=-1), "memories[0].provenance.at"),
        (lambda d: d["memories"][0].update(entities=[999]), "memories[0].entities"),
        (lambda d: d["memories"][0].update(embedding="AAAA"), "memories[0].embedding"),
        (lambda d: d["relations"][0].update(subject=999), "relations[0].subject"),
        (lambda d: d["entities"][0].update(name=""), "entities[0].entity"),
        (lambda d: d["memories"][2].update(kind="Not A Kind"), "memories[2].kind"),
    ],
)
def test_a_bad_import_is_refused_whole(tmp_path: Path, change: Any, field: str | None) -> None:
    with MemoryStore.open(tmp_path / "a.db") as source:
        _populate(source, ALICE)
        document = json.loads(json.dumps(source.export_identity(ALICE)))
    change(document)
    with MemoryStore.open(tmp_path / "b.db") as target:
        with pytest.raises((MemoryInputError, InvalidAuraID)) as caught:
            target.import_identity(document)
        if field is not None:
            assert getattr(caught.value, "field", None) == field
        assert target.identities() == [] and target.count() == 0


# -- forgetting an identity leaves no trace --------------------------------------------------------


def _marker(owner: int, i: int) -> str:
    return f"zq{owner}x{i:04d}"


def _file_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.parent.glob(path.name + "*"))}


def test_forget_identity_removes_every_trace(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    victim, keeper = BOB_ID, ALICE
    with MemoryStore.open(path) as store:
        for i in range(120):  # interleaved, some long enough to spill into overflow pages
            for number, owner in ((1, victim), (2, keeper)):
                text = f"Note {_marker(number, i)} about the launch. " + (
                    "padding words " * (400 if i % 10 == 0 else 3)
                )
                session = f"session-{_marker(number, i)}"
                store.remember(owner, text, said(day=i, session=session), entities=[f"Ent{_marker(number, i)}"])
            store.relate(victim, f"Ent{_marker(1, i)}", f"pred{_marker(1, i)}", "Shared Name", said())
        store.forget(victim, 1)  # earlier deletions too
        victim_partition = store._index._partitions[victim]
        before = b"".join(_file_bytes(path).values())
        assert _marker(1, 5).encode() in before and victim.encode() in before  # the check below can see text

        assert store.forget_identity(victim) == 119

        files = _file_bytes(path)
        assert set(files) <= {"memory.db", "memory.db-wal"}  # no -shm: the WAL index lives in the heap
        assert files.get("memory.db-wal", b"") == b""  # checkpointed and truncated
        data = files["memory.db"]
        for i in range(120):
            assert _marker(1, i).encode() not in data, i  # texts, entity names, predicates, session ids
            assert _marker(2, i).encode() in data, i  # the other identity is intact
        assert victim.encode() not in data  # not even the owner column
        # In memory: no partition, and the arrays it had are zeroed.
        assert victim not in store._index._partitions
        assert not victim_partition.vectors.any() and not victim_partition.ids.any()
        assert not victim_partition.mentions
        assert store.count(victim) == 0 and store.recall(victim, _marker(1, 5), now=T0) == []
        assert store.identities() == [keeper]
        empty = store.export_identity(victim)
        assert (empty["memories"], empty["entities"], empty["relations"]) == ([], [], [])
        assert store.recall(keeper, f"Note {_marker(2, 5)}", now=T0)[0].memory.text.startswith(f"Note {_marker(2, 5)}")
    with MemoryStore.open(path) as reopened:
        assert reopened.count(victim) == 0 and reopened.count(keeper) == 120
    assert _marker(1, 5).encode() not in b"".join(_file_bytes(path).values())


def test_forget_and_retention_leave_no_trace_of_the_deleted_text(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    with MemoryStore.open(path, retention=RetentionPolicy(rules=(RetentionRule(max_age=10 * DAY),))) as store:
        gone = store.remember(ALICE, "forgotten-zq9-one " * 50, said(day=30))
        store.remember(ALICE, "aged-zq9-two " * 50, said(day=0))
        store.remember(ALICE, "kept-zq9-three " * 50, said(day=30))
        store.forget(ALICE, gone.id)
        assert store.apply_retention(now=T0 + 31 * DAY).memories == 1
        data = b"".join(_file_bytes(path).values())
        assert b"forgotten-zq9" not in data and b"aged-zq9" not in data
        assert b"kept-zq9" in data


# -- files, persistence, refusals ------------------------------------------------------------------


def test_reopen_restores_vectors_graph_and_ids(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    with MemoryStore.open(path) as store:
        _populate(store, ALICE)
        last = store.remember(ALICE, "Temporary.", said())
        store.forget(ALICE, last.id)
        before = [(r.memory, r.score, r.reasons) for r in store.recall(ALICE, "Bob Falcon", now=T0 + 9 * DAY)]
    with MemoryStore.open(path) as store:
        after = [(r.memory, r.score, r.reasons) for r in store.recall(ALICE, "Bob Falcon", now=T0 + 9 * DAY)]
        assert after == before and len(after) == 2
        assert store.count(ALICE) == 3
        assert store.remember(ALICE, "New.", said()).id > last.id  # ids are never reused


def test_files_are_private_and_one_process_owns_them(tmp_path: Path) -> None:
    path = tmp_path / "private" / "memory.db"
    with MemoryStore.open(path) as store:
        store.remember(ALICE, "Private.", said())
        for file in path.parent.iterdir():
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        with pytest.raises(MemoryStoreError, match="another process or connection"):
            MemoryStore.open(path)
        code = "from auralink.agents.memory import MemoryStore; MemoryStore.open(__import__('sys').argv[1])"
        other = subprocess.run(
            [sys.executable, "-c", code, str(path)], check=False, capture_output=True, text=True, timeout=60
        )
        assert other.returncode != 0 and "MemoryStoreError" in other.stderr
    with MemoryStore.open(path) as again:  # closed: free again
        assert again.count() == 1


def test_another_embedder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    MemoryStore.open(path).close()
    with pytest.raises(EmbedderMismatch) as caught:
        MemoryStore.open(path, embedder=HashingEmbedder(dims=128))
    assert (caught.value.stored, caught.value.offered) == ("hashing-v1/256", "hashing-v1/128")


def create_memory_database(path: Path) -> None:
    with MemoryStore.open(path) as store:
        store.remember(ALICE, "Falcon ships Friday.", said())


def shorten_vectors(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE memories SET embedding = x'00000000'")
        db.commit()


@pytest.mark.parametrize("case", [*SPOILED, "short-vector"])
def test_foreign_or_damaged_files_are_refused_untouched(tmp_path: Path, case: str) -> None:
    path = tmp_path / "memory.db"
    if case == "short-vector":
        create_memory_database(path)
        shorten_vectors(path)
        message = "a stored vector does not have 256 dimensions"
    else:
        message = spoil(path, case, create=create_memory_database, latest=store_module.SCHEMA_VERSION)
    refusal = assert_refused_untouched(MemoryStore.open, path, MemoryStoreError, message)
    if case != "newer":
        assert "Choose another path for the memory database" in str(refusal)
    if case in ("foreign", "newer", "short-vector"):  # the refusal let go of the file's lock
        with contextlib.closing(sqlite3.connect(path, timeout=0)) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")


def test_a_rolled_back_write_leaves_the_index_unchanged(store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.remember(ALICE, "Falcon ships Friday.", said(), entities=["Falcon"])

    def fail(*_: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store_module, "_load_memories", fail)  # fails after the INSERTs, before COMMIT
    with pytest.raises(RuntimeError):
        store.remember(ALICE, "Falcon slipped to Monday.", said(), entities=["Falcon"])
    monkeypatch.undo()
    assert store.count(ALICE) == 1
    assert texts(store.recall(ALICE, "Falcon", now=T0)) == ["Falcon ships Friday."]


def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = MemoryStore.open(tmp_path / "memory.db")
    store.close()
    store.close()
    with pytest.raises(MemoryStoreError, match="closed"):
        store.remember(ALICE, "Too late.", said())


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.remember(ALICE, "", said()), "text"),
        (lambda s: s.remember(ALICE, "x" * 20_000, said()), "text"),
        (lambda s: s.remember(ALICE, "lone \ud800 surrogate", said()), "text"),
        (lambda s: s.remember(ALICE, b"bytes", said()), "text"),
        (lambda s: s.remember(ALICE, "ok", said(), kind="Decision"), "kind"),
        (lambda s: s.remember(ALICE, "ok", said(), importance=1.5), "importance"),
        (lambda s: s.remember(ALICE, "ok", said(), importance=math.nan), "importance"),
        (lambda s: s.remember(ALICE, "ok", said(), entities="Falcon"), "entities"),
        (lambda s: s.remember(ALICE, "ok", said(), entities=["one two three four five six seven"]), "entity"),
        (lambda s: s.remember(ALICE, "ok", said(), embedding=[0.1] * 255), "embedding"),
        (lambda s: s.remember(ALICE, "ok", said(), embedding=[math.inf] * 256), "embedding"),
        (lambda s: s.remember(ALICE, "ok", "not provenance"), "provenance"),
        (lambda s: s.get(ALICE, 0), "memory_id"),
        (lambda s: s.get(ALICE, True), "memory_id"),
        (lambda s: s.get(ALICE, "1"), "memory_id"),
        (lambda s: s.recall(ALICE, "q", now=math.inf), "now"),
        (lambda s: s.recall(ALICE, "q", now=T0, limit=0), "limit"),
        (lambda s: s.recall(ALICE, "q", now=T0, kinds="decision"), "kinds"),
        (lambda s: s.relate(ALICE, "Bob", "", "Falcon", said()), "predicate"),
        (lambda s: s.relate(ALICE, "Bob", "line\nbreak", "Falcon", said()), "predicate"),
    ],
)
def test_bad_input_raises_a_clear_memory_input_error(store: MemoryStore, call: Any, field: str) -> None:
    with pytest.raises(MemoryInputError) as caught:
        call(store)
    assert caught.value.field == field
    assert isinstance(caught.value, AgentMemoryError | LocalProtocolError)
    assert store.count() == 0


def test_bad_values_fail_where_they_are_made() -> None:
    with pytest.raises(MemoryInputError, match="speaker"):
        Provenance("s", "", T0)
    with pytest.raises(MemoryInputError, match="at"):
        Provenance("s", "x", -1.0)
    with pytest.raises(MemoryInputError, match="weight"):
        RecallWeights(similarity=-0.1)
    with pytest.raises(MemoryInputError, match="half_life"):
        RecallWeights(half_life=0)
    with pytest.raises(MemoryInputError, match="max_items"):
        RetentionRule(max_items=-1)
    with pytest.raises(MemoryInputError, match="dims"):
        HashingEmbedder(dims=3)


def test_bad_owner_and_unknown_ids(store: MemoryStore) -> None:
    with pytest.raises(InvalidAuraID):
        store.remember("@alice.aura", "Owners are AuraIDs.", said())
    memory = store.remember(ALICE, "Mine.", said())
    with pytest.raises(MemoryNotFound) as caught:
        store.get(BOB_ID, memory.id)
    assert caught.value.memory_id == memory.id
    assert store.get(Identity.from_seed(b"\x01" * 32).aura_id, memory.id) == memory  # an AuraID works too


class _ToyEmbedder:
    """A protocol-conforming embedder: one dimension per known word."""

    def __init__(self, broken: bool = False) -> None:
        self.words = ["alpha", "beta", "gamma", "delta"]
        self.broken = broken

    @property
    def name(self) -> str:
        return "toy-v1"

    @property
    def dims(self) -> int:
        return len(self.words)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        rows = np.array([[float(w in t.lower()) for w in self.words] for t in texts], dtype=np.float32)
        return rows[:, :2] if self.broken else rows


def test_a_custom_embedder_plugs_in_and_a_broken_one_is_caught(tmp_path: Path) -> None:
    assert isinstance(_ToyEmbedder(), Embedder)
    with MemoryStore.open(tmp_path / "toy.db", embedder=_ToyEmbedder()) as store:
        store.remember(ALICE, "alpha and beta", said())
        store.remember(ALICE, "gamma only", said())
        store.remember(ALICE, "x", said(), embedding=[0, 0, 3, 4])  # normalised on the way in
        results = store.recall(ALICE, "gamma", now=T0)
        assert texts(results) == ["gamma only", "x"]
        assert results[1].similarity == pytest.approx(0.6)
        assert store.export_identity(ALICE)["embedder"] == {"name": "toy-v1", "dims": 4}
    with (
        MemoryStore.open(tmp_path / "broken.db", embedder=_ToyEmbedder(broken=True)) as broken,
        pytest.raises(MemoryInputError, match="shape"),
    ):
        broken.remember(ALICE, "alpha", said())


# -- concurrency -----------------------------------------------------------------------------------


def test_threads_share_a_store(store: MemoryStore) -> None:
    owners = [str(Identity.from_seed(bytes([10 + i]) * 32).aura_id) for i in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(owners) + 2)

    def write(owner: str) -> None:
        try:
            barrier.wait()
            for i in range(40):
                store.remember(owner, f"Update {i} on Falcon from {owner[:6]}.", said(day=i), entities=["Falcon"])
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    def read() -> None:
        try:
            barrier.wait()
            for i in range(60):
                for result in store.recall(owners[i % 4], "Falcon update", now=T0 + 50 * DAY):
                    assert result.memory.owner == owners[i % 4]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(o,)) for o in owners]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    for owner in owners:
        assert store.count(owner) == 40
        assert len(store.recall(owner, "Falcon update", now=T0 + 50 * DAY, limit=100)) == 40


# -- properties ------------------------------------------------------------------------------------


def test_any_text_stores_and_recalls_with_finite_scores(tmp_path: Path) -> None:
    with MemoryStore.open(tmp_path / "memory.db") as store:

        @settings(max_examples=150)
        @given(text=st.text(max_size=200), query=st.text(max_size=80), day=st.floats(0, 3650))
        def check(text: str, query: str, day: float) -> None:
            try:
                memory = store.remember(ALICE, text, said(day=day), entities=())
            except MemoryInputError as exc:
                assert exc.field == "text"
                assert not text.strip() or any(0xD800 <= ord(c) <= 0xDFFF for c in text)
                return
            assert store.get(ALICE, memory.id).text == text
            for result in store.recall(ALICE, query, now=T0 + 3650 * DAY, limit=20):
                assert all(math.isfinite(x) for x in (result.score, result.similarity, result.graph, result.recency))
                assert 0.0 <= result.score <= 1.0 + 1e-6
            assert any(r.memory.id == memory.id for r in store.recall(ALICE, text, now=T0, limit=1000)) or (
                not store.embedder.embed([text]).any()
            )

        check()


@given(texts=st.lists(st.text(max_size=120), min_size=1, max_size=5))
def test_hashing_embedder_gives_unit_or_zero_rows(texts: list[str]) -> None:
    vectors = HashingEmbedder().embed(texts)
    assert vectors.shape == (len(texts), 256) and vectors.dtype == np.float32
    norms = np.linalg.norm(vectors, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
    assert np.array_equal(vectors, HashingEmbedder().embed(texts))  # a pure function of the text


def test_hashing_embedder_is_lexical_as_documented() -> None:
    embedder = HashingEmbedder()
    v = embedder.embed(
        [
            "We will ship Project Falcon on Friday.",
            "The falcons project ships friday",
            "Alice likes green tea.",
            "car",
            "automobile",
        ]
    )
    assert v[0] @ v[1] > 0.3  # shared words and word pieces
    assert abs(v[0] @ v[2]) < 0.15  # unrelated: collision noise only
    assert abs(v[3] @ v[4]) < 0.15  # synonyms are unrelated to a lexical embedder


# -- API and layering ------------------------------------------------------------------------------


def test_public_api_snapshot() -> None:
    assert sorted(auralink.agents.memory.__all__) == [
        "DEFAULT_DIMS",
        "Embedder",
        "Entity",
        "HashingEmbedder",
        "KINDS",
        "Memory",
        "MemoryDraft",
        "MemoryStore",
        "Provenance",
        "RecallWeights",
        "Recalled",
        "Relation",
        "RetentionPolicy",
        "RetentionReport",
        "RetentionRule",
    ]
    for name in auralink.agents.memory.__all__:
        assert hasattr(auralink.agents.memory, name)


def test_memory_cores_import_no_io_clocks_or_threads() -> None:
    forbidden = {"asyncio", "socket", "time", "threading", "sqlite3", "random", "os"}
    for module in ("embedding", "scoring", "index", "types", "export"):
        tree = ast.parse((ROOT / "auralink" / "agents" / "memory" / f"{module}.py").read_text())
        names = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        names |= {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
        }
        assert not names & forbidden, module


def test_store_reads_no_clock() -> None:
    source = (ROOT / "auralink" / "agents" / "memory" / "store.py").read_text()
    assert "import time" not in source and "datetime" not in source
