"""Golden vectors: the wire format of records cannot drift by accident."""

from __future__ import annotations

import json
from pathlib import Path

from auralink.identity import AuraID, HandleClaim, Identity, KeyRotation, NodeRecord, decode_record
from tests.vectors.generate import build

VECTORS = json.loads((Path(__file__).parent / "vectors" / "identity.json").read_text())


def test_keys_derive_the_stored_aura_ids() -> None:
    for key in VECTORS["keys"].values():
        identity = Identity.from_seed(bytes.fromhex(key["seed"]))
        assert str(identity.aura_id) == key["aura_id"]
        assert identity.aura_id.public_key.hex() == key["public_key"]
        assert AuraID.parse(key["aura_id"]) == identity.aura_id


def test_todays_code_encodes_and_signs_exactly_the_stored_bytes() -> None:
    assert build() == VECTORS


def test_stored_records_decode_and_verify() -> None:
    now = VECTORS["t0"] + 1
    a = AuraID.parse(VECTORS["keys"]["a"]["aura_id"])
    for name, kind in (("node_record", NodeRecord), ("handle_claim", HandleClaim), ("key_rotation", KeyRotation)):
        data = bytes.fromhex(VECTORS[name]["encoded"])
        record = decode_record(data)
        assert isinstance(record, kind)
        assert record.signature.hex() == VECTORS[name]["signature"]
        assert record.encode() == data
        if isinstance(record, KeyRotation):
            record.verify(now)
            assert record.old == a
        else:
            record.verify(now, expected=a)
