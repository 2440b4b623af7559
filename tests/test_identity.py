"""AuraIDs, handles and signed records: the rules every verifier applies."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auralink.errors import (
    IdentityError,
    InvalidAuraID,
    InvalidHandle,
    LocalProtocolError,
    RecordExpired,
    RecordFromFuture,
    RecordLifetimeTooLong,
    RecordTooLarge,
    RemoteProtocolError,
    SignatureError,
)
from auralink.identity import (
    RECORD_MAX_SIZE,
    AuraID,
    HandleClaim,
    Identity,
    KeyRotation,
    NodeRecord,
    Record,
    RelayAddress,
    decode_record,
    follow_rotations,
    parse_handle,
    pull_record,
    push_record,
    verify_signature,
)
from auralink.identity.records import MAX_CLOCK_SKEW, MAX_LIFETIME
from auralink.wire.address import Address
from auralink.wire.buffer import Buffer
from tests.strategies import IDENTITIES, handle_claims, key_rotations, node_records, records

ALICE, BOB, CAROL, MALLORY = IDENTITIES
T0 = 1_700_000_000


def node_record(identity: Identity = ALICE, seq: int = 1, **kw: object) -> NodeRecord:
    fields: dict[str, object] = {
        "seq": seq,
        "issued_at": T0,
        "expires_at": T0 + 3600,
        "addresses": [Address("127.0.0.1", 7700), Address("::1", 7700)],
        "relays": [RelayAddress(BOB.aura_id, Address("192.0.2.1", 7700))],
        "protocols": ["auralink/ping/1", "auralink/identify/1"],
    }
    fields.update(kw)
    return NodeRecord.create(identity, **fields)  # type: ignore[arg-type]


# -- AuraID ----------------------------------------------------------------------------


def test_aura_id_round_trips_through_its_string_form() -> None:
    for identity in IDENTITIES:
        text = str(identity.aura_id)
        assert len(text) == 56
        assert AuraID.parse(text) == identity.aura_id
        assert AuraID.parse(text.upper()) == identity.aura_id  # forgiving about case
        assert AuraID.parse(f"  {text}\n") == identity.aura_id


def test_every_single_character_typo_in_an_aura_id_is_caught() -> None:
    text = str(ALICE.aura_id)
    alphabet = "ybndrfg8ejkmcpqxot1uwisza345h769"
    for position, original in enumerate(text):
        for replacement in alphabet:
            if replacement == original:
                continue
            mistyped = text[:position] + replacement + text[position + 1 :]
            with pytest.raises(InvalidAuraID, match="mistyped"):
                AuraID.parse(mistyped)


def test_aura_id_errors_say_what_is_wrong() -> None:
    text = str(ALICE.aura_id)
    with pytest.raises(InvalidAuraID, match="expected 56 characters, got 55"):
        AuraID.parse(text[:-1])
    with pytest.raises(InvalidAuraID, match="position 1"):
        AuraID.parse("0" + text[1:])
    with pytest.raises(InvalidAuraID):
        AuraID(b"short")


@given(st.text(max_size=80))
def test_any_text_parses_as_aura_id_or_raises_invalid_aura_id(text: str) -> None:
    try:
        parsed = AuraID.parse(text)
    except InvalidAuraID:
        return
    assert str(parsed) == text.strip().lower()


@given(st.binary(min_size=32, max_size=32))
def test_aura_id_string_round_trip_for_any_key(public_key: bytes) -> None:
    aura_id = AuraID(public_key)
    assert AuraID.parse(str(aura_id)) == aura_id


def test_identity_repr_never_shows_the_secret() -> None:
    assert ALICE.seed.hex() not in repr(ALICE)
    assert ALICE.aura_id.short() in repr(ALICE)


def test_signatures_are_domain_separated() -> None:
    signature = ALICE.sign("test/one", b"message")
    verify_signature(ALICE.aura_id, "test/one", b"message", signature)
    with pytest.raises(SignatureError):
        verify_signature(ALICE.aura_id, "test/two", b"message", signature)
    with pytest.raises(SignatureError):
        verify_signature(BOB.aura_id, "test/one", b"message", signature)
    with pytest.raises(SignatureError):
        verify_signature(ALICE.aura_id, "test/one", b"message", signature[:-1])


# -- handles ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("alice", "@alice.aura"),
        ("@alice", "@alice.aura"),
        ("alice.aura", "@alice.aura"),
        ("@Alice.AURA", "@alice.aura"),
        ("\uff20\uff41\uff4c\uff49\uff43\uff45", "@alice.aura"),  # full-width, NFKC folds it
        ("a-1", "@a-1.aura"),
        ("x" * 32, "@" + "x" * 32 + ".aura"),
    ],
)
def test_handles_are_normalised(text: str, canonical: str) -> None:
    assert parse_handle(text) == canonical
    assert parse_handle(canonical) == canonical


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("\u0430lice", "not ASCII"),  # Cyrillic a: a confusable
        ("x" * 33, "1 to 32"),
        ("-alice", "start or end"),
        ("alice-", "start or end"),
        ("al_ice", "not allowed"),
        ("al ice", "not allowed"),
        ("al.ice", "not allowed"),
        ("", "1 to 32"),
    ],
)
def test_invalid_handles_are_rejected_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidHandle, match=reason):
        parse_handle(text)


@given(st.text(max_size=300))
def test_any_text_is_a_canonical_handle_or_invalid_handle(text: str) -> None:
    try:
        canonical = parse_handle(text)
    except InvalidHandle:
        return
    assert canonical.isascii()
    assert parse_handle(canonical) == canonical


# -- records: encoding -------------------------------------------------------------------


@given(records)
def test_records_round_trip(record: Record) -> None:
    data = record.encode()
    assert len(data) <= RECORD_MAX_SIZE
    decoded = decode_record(data)
    assert decoded == record
    assert decoded.encode() == data
    decoded.verify(decoded.issued_at)


@given(st.binary(max_size=1200))
def test_any_bytes_decode_canonically_or_raise_protocol_error(data: bytes) -> None:
    try:
        record = decode_record(data)
    except RemoteProtocolError:
        return
    assert record.encode() == data  # decoding is strict: one encoding per record


@given(records, st.data())
def test_corrupted_records_decode_canonically_or_raise_protocol_error(record: Record, data: st.DataObject) -> None:
    encoded = bytearray(record.encode())
    index = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[index] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded)))
    for candidate in (bytes(encoded), bytes(encoded[:cut])):
        try:
            decoded = decode_record(candidate)
        except RemoteProtocolError:
            continue
        assert decoded.encode() == candidate


def test_pull_record_reads_one_record_from_a_stream() -> None:
    first, second = node_record(), HandleClaim.create(BOB, "bob", seq=1, issued_at=T0, expires_at=T0 + 60)
    buf = Buffer()
    push_record(buf, first)
    push_record(buf, second)
    reader = Buffer(buf.data())
    assert pull_record(reader) == first
    assert pull_record(reader) == second
    assert reader.eof()


def test_oversized_records_are_refused_both_ways() -> None:
    with pytest.raises(RecordTooLarge):
        node_record(protocols=[f"proto/{i}/" + "x" * 50 for i in range(16)])
    with pytest.raises(RemoteProtocolError):
        decode_record(node_record().encode() + bytes(RECORD_MAX_SIZE))


def test_malformed_records_are_refused_at_creation() -> None:
    with pytest.raises(LocalProtocolError, match="expires_at"):
        node_record(expires_at=T0)
    with pytest.raises(LocalProtocolError, match="duplicate"):
        node_record(addresses=[Address("127.0.0.1", 1), Address("127.0.0.1", 1)])
    with pytest.raises(LocalProtocolError, match="port 0"):
        node_record(addresses=[Address("127.0.0.1", 0)])
    with pytest.raises(LocalProtocolError, match="itself"):
        KeyRotation.create(ALICE, ALICE, seq=1, issued_at=T0)
    with pytest.raises(InvalidHandle):
        HandleClaim.create(ALICE, "no way", seq=1, issued_at=T0, expires_at=T0 + 1)


# -- records: verification ---------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        node_record,
        lambda: HandleClaim.create(ALICE, "alice", seq=3, issued_at=T0, expires_at=T0 + 3600),
        lambda: KeyRotation.create(ALICE, BOB, seq=1, issued_at=T0),
    ],
    ids=["node", "handle", "rotation"],
)
def test_flipping_any_single_bit_breaks_verification(make: object) -> None:
    record = make()  # type: ignore[operator]
    encoded = record.encode()
    record.verify(T0)
    for bit in range(len(encoded) * 8):
        flipped = bytearray(encoded)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((RemoteProtocolError, IdentityError)):
            decode_record(bytes(flipped)).verify(T0)


def test_valid_record_verifies_within_its_lifetime() -> None:
    record = node_record()
    record.verify(T0)
    record.verify(T0 + 3599.9, expected=ALICE.aura_id)
    record.verify(T0 - MAX_CLOCK_SKEW)  # verifier's clock behind by the allowed skew


def test_expired_record_is_rejected() -> None:
    with pytest.raises(RecordExpired):
        node_record().verify(T0 + 3600)


def test_record_from_the_future_beyond_skew_is_rejected() -> None:
    with pytest.raises(RecordFromFuture, match="clocks"):
        node_record().verify(T0 - MAX_CLOCK_SKEW - 1)


def test_record_for_the_wrong_key_is_rejected() -> None:
    with pytest.raises(SignatureError, match="expected"):
        node_record().verify(T0, expected=BOB.aura_id)


def test_forged_record_is_rejected() -> None:
    honest = node_record()
    forged = dataclasses.replace(honest, signature=MALLORY.sign(NodeRecord.DOMAIN, honest._to_be_signed()))
    with pytest.raises(SignatureError):
        forged.verify(T0)


def test_tampered_record_is_rejected() -> None:
    honest = node_record()
    for changes in ({"seq": 99}, {"expires_at": T0 + 10**6}, {"addresses": (Address("203.0.113.5", 1),)}):
        with pytest.raises(SignatureError):
            dataclasses.replace(honest, **changes).verify(T0)  # type: ignore[arg-type]


def test_a_signature_for_one_record_kind_never_passes_for_another() -> None:
    claim = HandleClaim.create(ALICE, "alice", seq=1, issued_at=T0, expires_at=T0 + 60)
    record = node_record()
    crossed = dataclasses.replace(record, signature=ALICE.sign(HandleClaim.DOMAIN, record._to_be_signed()))
    with pytest.raises(SignatureError):
        crossed.verify(T0)
    claim.verify(T0)


def test_rotation_needs_both_signatures() -> None:
    rotation = KeyRotation.create(ALICE, BOB, seq=1, issued_at=T0)
    rotation.verify(T0)
    # Mallory cannot claim to have rotated into Bob's key without Bob's countersignature ...
    unconsented = KeyRotation.create(MALLORY, CAROL, seq=1, issued_at=T0)
    with pytest.raises(SignatureError):
        dataclasses.replace(unconsented, new=BOB.aura_id).verify(T0)
    # ... and cannot hijack Alice's identity with a rotation only Mallory signed.
    hijack = KeyRotation.create(MALLORY, CAROL, seq=1, issued_at=T0)
    with pytest.raises(SignatureError):
        dataclasses.replace(hijack, old=ALICE.aura_id).verify(T0)


# -- ordering and rotation chains -------------------------------------------------------


def test_higher_seq_wins() -> None:
    old, new = node_record(seq=1), node_record(seq=2)
    assert new.supersedes(old)
    assert not old.supersedes(new)
    assert not node_record(BOB, seq=9).supersedes(old)  # different subject


@given(node_records(), node_records())
def test_supersedes_is_a_strict_order_per_subject(a: NodeRecord, b: NodeRecord) -> None:
    assert not a.supersedes(a)
    if a.aura_id == b.aura_id and a != b:
        assert a.supersedes(b) != b.supersedes(a)
    else:
        assert not (a.supersedes(b) and b.supersedes(a))


@given(handle_claims(), key_rotations())
def test_claims_and_rotations_verify_when_fresh(claim: HandleClaim, rotation: KeyRotation) -> None:
    claim.verify(claim.issued_at)
    rotation.verify(rotation.issued_at)


def test_verifiers_follow_rotation_chains() -> None:
    a_to_b = KeyRotation.create(ALICE, BOB, seq=1, issued_at=T0)
    b_to_c = KeyRotation.create(BOB, CAROL, seq=1, issued_at=T0)
    assert follow_rotations(ALICE.aura_id, [b_to_c, a_to_b], T0) == CAROL.aura_id
    assert follow_rotations(BOB.aura_id, [a_to_b, b_to_c], T0) == CAROL.aura_id
    assert follow_rotations(CAROL.aura_id, [a_to_b, b_to_c], T0) == CAROL.aura_id


def test_forged_rotations_are_not_followed() -> None:
    forged = dataclasses.replace(KeyRotation.create(MALLORY, CAROL, seq=1, issued_at=T0), old=ALICE.aura_id)
    assert follow_rotations(ALICE.aura_id, [forged], T0) == ALICE.aura_id


def test_the_latest_rotation_from_a_key_counts() -> None:
    first = KeyRotation.create(ALICE, BOB, seq=1, issued_at=T0)
    second = KeyRotation.create(ALICE, CAROL, seq=2, issued_at=T0)
    assert follow_rotations(ALICE.aura_id, [second, first], T0) == CAROL.aura_id


def test_rotation_cycles_are_rejected() -> None:
    cycle = [KeyRotation.create(ALICE, BOB, seq=1, issued_at=T0), KeyRotation.create(BOB, ALICE, seq=1, issued_at=T0)]
    with pytest.raises(SignatureError, match="cycle"):
        follow_rotations(ALICE.aura_id, cycle, T0)


def test_records_valid_for_too_long_are_refused() -> None:
    with pytest.raises(LocalProtocolError, match="at most"):
        node_record(expires_at=T0 + MAX_LIFETIME + 1)
    squatter = dataclasses.replace(node_record(), expires_at=T0 + MAX_LIFETIME + 1)
    object.__setattr__(squatter, "signature", ALICE.sign(NodeRecord.DOMAIN, squatter._to_be_signed()))
    with pytest.raises(RecordLifetimeTooLong):
        squatter.verify(T0)


def test_decoded_record_verifies_over_the_bytes_it_arrived_as() -> None:
    record = node_record()
    decoded = decode_record(record.encode())
    assert decoded._signed == record._to_be_signed()
    assert dataclasses.replace(decoded, seq=2)._signed == b""  # a changed record never reuses them
