"""Room grants (auralink.calls.grants): signing, the codec, and every refusal of verify()."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auralink.calls.grants import (
    GRANT_MAX_SIZE,
    MAX_GRANT_LIFETIME,
    Capability,
    Grant,
    RoomId,
    decode_grant,
    verify,
)
from auralink.errors import (
    GrantError,
    GrantExpired,
    GrantForged,
    GrantMismatch,
    GrantNotYetValid,
    LocalProtocolError,
    NotPermitted,
    RemoteProtocolError,
    RoomError,
)
from tests.strategies import IDENTITIES, identities

OWNER, ALICE, MALLORY = IDENTITIES[0], IDENTITIES[1], IDENTITIES[2]
ROOM = RoomId(OWNER.aura_id, "standup")
NOW = 1_700_000_000


PARTICIPANT = Capability.participant()


def grant(caps: Capability = PARTICIPANT, *, subject: int = 1, nb: int = NOW - 10, exp: int = NOW + 3600) -> Grant:
    return Grant.create(OWNER, ROOM, IDENTITIES[subject].aura_id, caps, not_before=nb, expires_at=exp)


room_names = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp", "Co", "Cn", "Zs"), blacklist_characters="@"
    ),
    min_size=1,
    max_size=16,
)


@st.composite
def grants(draw: st.DrawFn) -> Grant:
    owner = draw(identities)
    nb = draw(st.integers(min_value=0, max_value=1 << 62))
    exp = draw(st.integers(min_value=nb + 1, max_value=nb + MAX_GRANT_LIFETIME))
    return Grant.create(
        owner,
        RoomId(owner.aura_id, draw(room_names)),
        draw(identities).aura_id,
        Capability(draw(st.integers(min_value=0, max_value=255))),
        not_before=nb,
        expires_at=exp,
    )


@given(grants())
def test_grants_round_trip_byte_for_byte(g: Grant) -> None:
    data = g.encode()
    assert len(data) <= GRANT_MAX_SIZE
    decoded = decode_grant(data)
    assert decoded == g
    assert decoded.encode() == data
    verify(decoded, g.room, g.not_before)  # still genuine after the trip


@given(st.binary(max_size=300))
def test_any_bytes_decode_to_a_grant_or_raise_a_protocol_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_grant(data)


@given(grants(), st.data())
def test_a_mutated_grant_never_verifies_as_the_original(g: Grant, data: st.DataObject) -> None:
    raw = bytearray(g.encode())
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    try:
        mutated = decode_grant(bytes(raw))
    except RemoteProtocolError:
        return
    with pytest.raises(GrantError):
        verify(mutated, g.room, g.not_before)


def test_a_genuine_grant_verifies_and_says_what_it_allows() -> None:
    g = verify(grant(), ROOM, NOW, subject=ALICE.aura_id)
    assert g.issuer == OWNER.aura_id
    assert g.allows(Capability.JOIN | Capability.PUBLISH)
    assert not g.allows(Capability.ADMIN)
    assert g.capabilities.names() == ("join", "publish", "subscribe", "publish_data")


def test_a_grant_signed_by_someone_else_than_the_owner_is_forged() -> None:
    genuine = grant(Capability.JOIN)
    # Mallory signs the very same bytes with her key and passes it off as the owner's.
    forged = dataclasses.replace(genuine, signature=MALLORY.sign("room/grant", genuine.to_be_signed()))
    with pytest.raises(GrantForged, match="not signed by the room owner"):
        verify(forged, ROOM, NOW)


def test_a_grant_whose_capabilities_were_raised_is_forged() -> None:
    tampered = dataclasses.replace(grant(Capability.JOIN), capabilities=Capability.JOIN | Capability.ADMIN)
    with pytest.raises(GrantForged) as info:
        verify(tampered, ROOM, NOW)
    assert isinstance(info.value, RoomError) and info.value.room == ROOM.short()


def test_a_signature_from_another_domain_does_not_pass_for_a_grant() -> None:
    genuine = grant()
    other = dataclasses.replace(genuine, signature=OWNER.sign("record/node", genuine.to_be_signed()))
    with pytest.raises(GrantForged):
        verify(other, ROOM, NOW)


def test_an_expired_grant_is_refused() -> None:
    g = grant(nb=NOW - 100, exp=NOW - 1)
    with pytest.raises(GrantExpired, match="expired 1 s ago"):
        verify(g, ROOM, NOW)
    with pytest.raises(GrantExpired):  # expires_at itself is already void
        verify(g, ROOM, NOW - 1)
    verify(g, ROOM, NOW - 2)


def test_a_grant_from_the_future_is_refused_beyond_the_skew() -> None:
    g = grant(nb=NOW + 1000, exp=NOW + 2000)
    with pytest.raises(GrantNotYetValid):
        verify(g, ROOM, NOW)
    verify(g, ROOM, NOW + 1000 - 120)  # within the allowed skew


def test_a_grant_for_another_room_or_another_subject_is_a_mismatch() -> None:
    with pytest.raises(GrantMismatch, match="for room standup"):
        verify(grant(), RoomId(OWNER.aura_id, "other"), NOW)
    with pytest.raises(GrantMismatch, match="presented it"):
        verify(grant(), ROOM, NOW, subject=MALLORY.aura_id)


def test_a_missing_capability_is_not_permitted_with_its_name() -> None:
    g = grant(Capability.JOIN | Capability.SUBSCRIBE)
    with pytest.raises(NotPermitted, match="lacks 'publish'") as info:
        g.require(Capability.PUBLISH, "publish")
    assert (info.value.capability, info.value.action) == ("publish", "publish")
    g.require(Capability.SUBSCRIBE)


def test_only_the_owner_signs_and_bad_values_are_refused_locally() -> None:
    with pytest.raises(LocalProtocolError, match="only the owner"):
        Grant.create(MALLORY, ROOM, ALICE.aura_id, Capability.JOIN, not_before=0, expires_at=10)
    with pytest.raises(LocalProtocolError, match="later than"):
        grant(nb=NOW, exp=NOW)
    with pytest.raises(LocalProtocolError, match="at most"):
        grant(nb=NOW, exp=NOW + MAX_GRANT_LIFETIME + 1)
    for bad in ("", "a@b", "x" * 65, "tab\there"):
        with pytest.raises(LocalProtocolError):
            RoomId(OWNER.aura_id, bad)


def test_room_ids_parse_from_their_text_form() -> None:
    assert RoomId.parse(str(ROOM)) == ROOM
    with pytest.raises(LocalProtocolError):
        RoomId.parse("no-owner")
    with pytest.raises(LocalProtocolError, match="bad owner"):
        RoomId.parse("standup@notanauraid")


def test_strict_decoding_refuses_trailing_bytes_bad_versions_and_inverted_times() -> None:
    data = grant().encode()
    with pytest.raises(RemoteProtocolError, match="trailing"):
        decode_grant(data + b"\x00")
    with pytest.raises(RemoteProtocolError, match="version"):
        decode_grant(b"\x02" + data[1:])
    g = grant()
    inverted = bytearray(data)
    tail = len(data) - 64 - 16
    inverted[tail : tail + 16] = g.expires_at.to_bytes(8, "big") + g.not_before.to_bytes(8, "big")
    with pytest.raises(RemoteProtocolError, match="later than"):
        decode_grant(bytes(inverted))


def test_the_grant_core_imports_no_io_or_clocks() -> None:
    tree = ast.parse(Path(__file__).resolve().parent.parent.joinpath("auralink/calls/grants.py").read_text())
    names = {
        (n.module or "") if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert not {name.split(".")[0] for name in names} & {"asyncio", "socket", "time", "threading"}
