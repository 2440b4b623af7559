"""RecordBook: the acceptance rules every record holder applies."""

from __future__ import annotations

import pytest

from auralink.errors import HandleTaken, RecordExpired, SignatureError, StaleRecord
from auralink.identity import HandleClaim, KeyRotation, NodeRecord, RecordBook
from auralink.wire.address import Address
from tests.strategies import IDENTITIES

ALICE, BOB, CAROL, MALLORY = IDENTITIES
T0 = 1_700_000_000.0


def record(identity=ALICE, seq=1, port=7700, ttl=3600):  # type: ignore[no-untyped-def]
    return NodeRecord.create(
        identity, seq=seq, issued_at=int(T0), expires_at=int(T0) + ttl, addresses=[Address("127.0.0.1", port)]
    )


def claim(identity=ALICE, handle="alice", seq=1, ttl=3600):  # type: ignore[no-untyped-def]
    return HandleClaim.create(identity, handle, seq=seq, issued_at=int(T0), expires_at=int(T0) + ttl)


def test_stores_and_returns_a_valid_record() -> None:
    book = RecordBook()
    assert book.put(record(), T0)
    assert book.node(ALICE.aura_id, T0) == record()
    assert book.node(BOB.aura_id, T0) is None


def test_same_record_again_is_a_no_op() -> None:
    book = RecordBook()
    assert book.put(record(), T0)
    assert not book.put(record(), T0)
    assert len(book) == 1


def test_newer_seq_replaces_and_replay_of_older_is_refused() -> None:
    book = RecordBook()
    book.put(record(seq=1), T0)
    book.put(record(seq=2, port=7701), T0)
    with pytest.raises(StaleRecord):
        book.put(record(seq=1), T0)
    assert book.node(ALICE.aura_id, T0).addresses == (Address("127.0.0.1", 7701),)  # type: ignore[union-attr]


def test_invalid_records_are_never_stored() -> None:
    book = RecordBook()
    with pytest.raises(RecordExpired):
        book.put(record(ttl=10), T0 + 10)
    forged = NodeRecord(ALICE.aura_id, 5, int(T0), int(T0) + 60, (), (), (), MALLORY.sign(NodeRecord.DOMAIN, b"x"))
    with pytest.raises(SignatureError):
        book.put(forged, T0)
    assert len(book) == 0


def test_expired_records_disappear() -> None:
    book = RecordBook()
    book.put(record(ttl=60), T0)
    book.put(record(BOB, ttl=600), T0)
    assert book.node(ALICE.aura_id, T0 + 60) is None
    assert book.expire(T0 + 600) == 1
    assert len(book) == 0


def test_a_held_handle_cannot_be_claimed_by_another_key() -> None:
    book = RecordBook()
    book.put(claim(), T0)
    with pytest.raises(HandleTaken, match=r"@alice\.aura"):
        book.put(claim(MALLORY, seq=99), T0)
    assert book.claim("@alice.aura", T0) == claim()


def test_an_expired_claim_frees_the_handle() -> None:
    book = RecordBook()
    book.put(claim(ttl=60), T0)
    book.put(claim(BOB, seq=1, ttl=600), T0 + 61)
    assert book.claim("alice", T0 + 61).aura_id == BOB.aura_id  # type: ignore[union-attr]


def test_a_key_rotation_moves_the_handle() -> None:
    book = RecordBook()
    book.put(claim(), T0)
    book.put(record(), T0)
    with pytest.raises(HandleTaken):
        book.put(claim(BOB, seq=2), T0)
    book.put(KeyRotation.create(ALICE, BOB, seq=1, issued_at=int(T0)), T0)
    book.put(claim(BOB, seq=2), T0)
    book.put(record(BOB, port=7800), T0)
    resolved = book.resolve("@alice.aura", T0)
    assert resolved is not None and resolved.aura_id == BOB.aura_id


def test_resolve_goes_from_handle_to_node_record() -> None:
    book = RecordBook()
    assert book.resolve("alice", T0) is None
    book.put(claim(), T0)
    assert book.resolve("alice", T0) is None  # claim but no node record yet
    book.put(record(), T0)
    assert book.resolve("ALICE", T0) == record()
