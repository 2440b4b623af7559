"""Reputation: decaying Beta scores, bans that expire and escalate, ranking, and persistence in the node store."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auralink.errors import InvalidAuraID, LocalProtocolError
from auralink.identity import AuraID
from auralink_node.reputation import (
    Evidence,
    ReputationBook,
    ReputationConfig,
    ReputationEntry,
    Role,
    Standing,
)
from auralink_node.store import MIGRATIONS, NodeStore, StoreCorrupt

T0 = 1_700_000_000.0  # wall-clock seconds, explicit everywhere
HOUR, DAY, WEEK = 3600.0, 86_400.0, 7 * 86_400.0


def node(n: int) -> str:
    return str(AuraID(n.to_bytes(32, "big")))


A, B, C, D = node(1), node(2), node(3), node(4)


# -- scores -----------------------------------------------------------------------------------------------------


def test_a_stranger_is_neutral() -> None:
    book = ReputationBook()
    standing = book.standing(Role.RELAY, A, T0)
    assert standing.score == 0.5 and standing.evidence == 0 and not standing.banned
    assert len(book) == 0  # reading creates nothing


def test_successes_raise_and_failures_lower_the_score_with_diminishing_steps() -> None:
    book = ReputationBook()
    scores = [book.success(Role.RELAY, A, T0).score for _ in range(3)]
    assert scores == pytest.approx([2 / 3, 3 / 4, 4 / 5])
    assert book.failure(Role.RELAY, B, T0).score == pytest.approx(1 / 3)
    assert book.record(Role.RELAY, B, Evidence.FAILURE, T0, count=2).score == pytest.approx(1 / 5)


def test_evidence_halves_every_half_life_and_the_score_returns_towards_neutral() -> None:
    book = ReputationBook()
    for _ in range(8):
        book.success(Role.PEER, A, T0)
    book.failure(Role.PEER, A, T0)
    later = book.standing(Role.PEER, A, T0 + WEEK)
    assert (later.positive, later.negative) == pytest.approx((4.0, 0.5))
    assert 0.5 < later.score < book.score(Role.PEER, A, T0)
    assert book.score(Role.PEER, A, T0 + 52 * WEEK) == pytest.approx(0.5, abs=1e-6)


evidence_lists = st.lists(
    st.tuples(st.sampled_from(list(Evidence)), st.floats(min_value=0.0, max_value=30 * DAY)), max_size=12
)


@given(evidence_lists, st.floats(min_value=0.0, max_value=60 * DAY), st.floats(min_value=0.0, max_value=60 * DAY))
def test_decay_is_monotone_towards_neutral(events: list[tuple[Evidence, float]], gap: float, more: float) -> None:
    book = ReputationBook()
    now = T0
    for evidence, step in events:
        now += step
        book.record(Role.RELAY, A, evidence, now)
    first = book.standing(Role.RELAY, A, now + gap)
    second = book.standing(Role.RELAY, A, now + gap + more)
    assert abs(second.score - 0.5) <= abs(first.score - 0.5) + 1e-12
    assert (second.score - 0.5) * (first.score - 0.5) >= 0  # never crosses neutral
    assert second.evidence <= first.evidence + 1e-12 and second.strikes <= first.strikes + 1e-12
    assert 0.0 < second.score < 1.0 and math.isfinite(second.score)


def test_roles_are_judged_apart() -> None:
    book = ReputationBook()
    book.abuse(Role.RELAY, A, T0, reason="quota")
    assert book.is_banned(Role.RELAY, A, T0) and not book.is_banned(Role.PEER, A, T0)
    assert book.score(Role.PEER, A, T0) == 0.5


def test_uptime_and_relayed_bytes_count_as_good_evidence() -> None:
    book = ReputationBook()
    assert book.uptime(Role.RELAY, A, 10 * HOUR, T0).positive == pytest.approx(5.0)
    assert book.relayed(B, 250_000_000, T0).positive == pytest.approx(2.5)
    assert book.relayed(C, 10**12, T0).positive == ReputationConfig().relayed_cap


# -- bans -------------------------------------------------------------------------------------------------------


def test_invalid_records_over_the_threshold_ban_and_the_ban_expires() -> None:
    book = ReputationBook()
    assert not book.invalid_record(Role.PEER, A, T0, reason="forged signature").banned
    assert not book.invalid_record(Role.PEER, A, T0 + 60).banned
    third = book.invalid_record(Role.PEER, A, T0 + 120, reason="forged signature")
    assert third.banned and third.banned_until == T0 + 120 + HOUR and third.ban_reason == "forged signature"
    assert third.strikes == 0.0 and third.bans == 1
    assert book.is_banned(Role.PEER, A, T0 + 120 + HOUR - 1)
    expired = book.standing(Role.PEER, A, T0 + 120 + HOUR)
    assert not expired.banned and expired.banned_until is None and expired.ban_reason is None
    assert expired.score < 0.5  # the evidence is still there, decaying


def test_strikes_decay_so_sparse_invalid_records_never_ban() -> None:
    book = ReputationBook()
    for i in range(60):  # one a day, for two months: the strikes settle at 1 / (1 - 1/2) = 2 < 2.5
        assert not book.invalid_record(Role.PEER, A, T0 + i * DAY).banned
    assert book.invalid_record(Role.PEER, B, T0).strikes == 1.0
    assert book.invalid_record(Role.PEER, B, T0 + 6 * HOUR).strikes == pytest.approx(1 + 2**-0.25)
    assert book.invalid_record(Role.PEER, B, T0 + 12 * HOUR).banned  # three within half a day


def test_abuse_bans_at_once_and_repeat_bans_escalate_up_to_the_cap() -> None:
    book = ReputationBook()
    now, lengths = T0, []
    for _ in range(10):
        standing = book.abuse(Role.RELAY, A, now, reason="quota")
        assert standing.banned and standing.ban_reason == "quota"
        assert standing.banned_until is not None
        lengths.append(standing.banned_until - now)
        now = standing.banned_until + 1.0
    assert lengths[:4] == [HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR]
    assert max(lengths) == WEEK == lengths[-1]


def test_escalation_is_forgotten_after_a_long_clean_period() -> None:
    book = ReputationBook()
    first = book.abuse(Role.RELAY, A, T0)
    assert first.banned_until is not None
    again = book.abuse(Role.RELAY, A, first.banned_until + 31 * DAY)
    assert again.bans == 1 and again.banned_until == first.banned_until + 31 * DAY + HOUR


def test_operator_ban_and_unban() -> None:
    book = ReputationBook()
    banned = book.ban(Role.PEER, A, T0, duration=600.0, reason="operator said so")
    assert banned.banned_until == T0 + 600.0 and banned.ban_reason == "operator said so"
    assert book.is_banned(Role.PEER, A, T0 + 599.0)
    assert not book.unban(Role.PEER, A, T0 + 10.0).banned
    assert not book.is_banned(Role.PEER, A, T0 + 11.0)
    with pytest.raises(LocalProtocolError):
        book.ban(Role.PEER, A, T0, duration=0.0)


# -- ranking ----------------------------------------------------------------------------------------------------


def test_rank_orders_by_score_then_evidence_then_id_and_leaves_out_the_banned() -> None:
    book = ReputationBook()
    for _ in range(3):
        book.success(Role.RELAY, B, T0)
    book.success(Role.RELAY, C, T0)
    book.record(Role.RELAY, D, Evidence.SUCCESS, T0, count=9)
    book.record(Role.RELAY, D, Evidence.FAILURE, T0, count=3)  # 10/14 = 0.714, below B's 4/5 and above C's 2/3
    book.abuse(Role.RELAY, node(5), T0)
    candidates = [node(5), C, A, D, B, node(6), A]
    ranked = [s.aura_id for s in book.rank(Role.RELAY, candidates, T0 + 1)]
    strangers = sorted([A, node(6)])
    assert ranked == [B, D, C, *strangers]
    with_banned = book.rank(Role.RELAY, candidates, T0 + 1, include_banned=True)
    assert with_banned[-1].aura_id == node(5) and with_banned[-1].banned
    assert [s.aura_id for s in book.rank(Role.RELAY, candidates, T0 + 1)] == ranked  # deterministic


def test_standings_list_every_known_subject() -> None:
    book = ReputationBook()
    book.success(Role.RELAY, A, T0)
    book.failure(Role.PEER, B, T0)
    assert [(s.role, s.aura_id) for s in book.standings(T0)] == [(Role.PEER, B), (Role.RELAY, A)]
    assert [s.aura_id for s in book.standings(T0, Role.RELAY)] == [A]
    assert Standing.to_dict(book.standing(Role.RELAY, A, T0))["score"] == pytest.approx(0.6667, abs=1e-4)


# -- inputs and time --------------------------------------------------------------------------------------------


def test_a_clock_that_goes_backwards_decays_nothing() -> None:
    book = ReputationBook()
    book.success(Role.PEER, A, T0)
    book.success(Role.PEER, A, T0 - DAY)
    assert book.standing(Role.PEER, A, T0).positive == pytest.approx(2.0)


def test_inputs_are_checked() -> None:
    book = ReputationBook()
    with pytest.raises(InvalidAuraID):
        book.success(Role.PEER, "not-an-aura-id", T0)
    for call in (
        lambda: book.success("peer", A, T0),  # type: ignore[arg-type]
        lambda: book.success(Role.PEER, A, math.inf),
        lambda: book.record(Role.PEER, A, "success", T0),  # type: ignore[arg-type]
        lambda: book.record(Role.PEER, A, Evidence.SUCCESS, T0, count=-1.0),
        lambda: book.uptime(Role.PEER, A, math.nan, T0),
        lambda: book.relayed(A, -5, T0),
        lambda: ReputationConfig(half_life=0.0),
        lambda: ReputationConfig(ban_growth=0.5),
        lambda: ReputationEntry(Role.PEER, A, -1.0, 0.0, 0.0, T0),
        lambda: ReputationBook(entries=[("peer", A)]),  # type: ignore[list-item]
    ):
        with pytest.raises(LocalProtocolError):
            call()


# -- persistence ------------------------------------------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "node.db"


def busy_book() -> ReputationBook:
    book = ReputationBook()
    for _ in range(5):
        book.success(Role.RELAY, A, T0)
    book.relayed(A, 300_000_000, T0 + 10)
    book.failure(Role.PEER, B, T0 + 20)
    book.invalid_record(Role.PEER, B, T0 + 30)
    book.abuse(Role.RELAY, C, T0 + 40, reason="quota")
    book.uptime(Role.PEER, D, 2 * HOUR, T0 + 50)
    return book


def test_reputation_round_trips_through_a_real_sqlite_file(db_path: Path) -> None:
    book = busy_book()
    changed, removed = book.take_changes()
    assert {(e.role, e.aura_id) for e in changed} == {(Role.RELAY, A), (Role.PEER, B), (Role.RELAY, C), (Role.PEER, D)}
    assert removed == []
    with NodeStore.open(db_path) as store:
        store.save_reputation(changed, removed)
    with NodeStore.open(db_path) as store:  # a restart
        loaded = store.load_reputation()
    assert loaded == book.entries()
    restored = ReputationBook(entries=loaded)
    later = T0 + 3 * DAY
    assert restored.standings(later) == book.standings(later)
    assert restored.is_banned(Role.RELAY, C, T0 + 41) and not restored.is_banned(Role.RELAY, C, T0 + 41 + HOUR)


def test_only_changes_are_saved_and_forgotten_subjects_are_deleted(db_path: Path) -> None:
    book = busy_book()
    with NodeStore.open(db_path) as store:
        store.save_reputation(*book.take_changes())
        assert book.take_changes() == ([], [])
        book.success(Role.RELAY, A, T0 + 100)
        changed, removed = book.take_changes()
        assert [(e.role, e.aura_id) for e in changed] == [(Role.RELAY, A)]
        store.save_reputation(changed, removed)
        # A year on, everyone but the banned relay (still within its ban memory? no: long past) fades away.
        assert book.prune(T0 + 365 * DAY) == 4 and len(book) == 0
        changed, removed = book.take_changes()
        assert changed == [] and len(removed) == 4
        store.save_reputation(changed, removed)
        assert store.load_reputation() == []


def test_prune_keeps_subjects_with_evidence_or_a_recent_ban() -> None:
    book = busy_book()
    assert book.prune(T0 + 100) == 0
    assert book.prune(T0 + 20 * DAY) == 0  # C's ban is within ban memory
    assert (Role.RELAY, C) in book


def test_migration_3_applies_to_a_file_at_version_2_and_keeps_its_rows(db_path: Path) -> None:
    with NodeStore.open(db_path, migrations=MIGRATIONS[:2]) as store:
        store.peer_seen(A, T0, handle="@alice.aura")
    with NodeStore.open(db_path) as store:
        assert [row.aura_id for row in store.peers()] == [A]
        assert store.load_reputation() == []
        store.save_reputation(busy_book().entries())
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3 == len(MIGRATIONS)
    assert db.execute("SELECT count(*) FROM reputation_scores").fetchone()[0] == 4


def test_the_store_checks_what_it_is_given(db_path: Path) -> None:
    with NodeStore.open(db_path) as store:
        with pytest.raises(LocalProtocolError):
            store.save_reputation([("relay", A)])  # type: ignore[list-item]
        with pytest.raises(LocalProtocolError):
            store.save_reputation([], [("relay", A)])  # type: ignore[list-item]
        with pytest.raises(InvalidAuraID):
            store.save_reputation([], [(Role.RELAY, "nope")])


def test_a_damaged_reputation_row_is_reported_not_loaded(db_path: Path) -> None:
    NodeStore.open(db_path).close()
    db = sqlite3.connect(db_path)
    db.execute(
        "INSERT INTO reputation_scores (role, aura_id, positive, negative, strikes, updated_at, bans) "
        "VALUES ('relay', 'not-an-aura-id', 1, 0, 0, ?, 0)",
        (T0,),
    )
    db.commit()
    db.close()
    with NodeStore.open(db_path) as store, pytest.raises(StoreCorrupt, match="unreadable reputation row"):
        store.load_reputation()


@given(evidence_lists)
def test_a_book_rebuilt_from_its_entries_is_the_same_book(events: list[tuple[Evidence, float]]) -> None:
    book = ReputationBook()
    now = T0
    for i, (evidence, step) in enumerate(events):
        now += step
        book.record(Role.RELAY if i % 2 else Role.PEER, node(1 + i % 3), evidence, now)
    rebuilt = ReputationBook(entries=book.entries())
    for t in (now, now + DAY, now + 90 * DAY):
        assert rebuilt.standings(t) == book.standings(t)
