"""Write tests/vectors/identity.json from fixed test keys.

Run it only when the wire format changes on purpose (and bump RECORD_VERSION then):
``python -m tests.vectors.generate``. The tests never regenerate the file; they check that
today's code produces exactly the stored bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from auralink.identity import HandleClaim, Identity, KeyRotation, NodeRecord, RelayAddress
from auralink.wire.address import Address

SEED_A = bytes(range(32))
SEED_B = bytes(range(32, 64))
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def build() -> dict[str, Any]:
    a, b = Identity.from_seed(SEED_A), Identity.from_seed(SEED_B)
    node = NodeRecord.create(
        a,
        seq=7,
        issued_at=T0,
        expires_at=T0 + 3600,
        addresses=[Address("192.0.2.10", 7700), Address("2001:db8::10", 7700)],
        relays=[RelayAddress(b.aura_id, Address("198.51.100.1", 443))],
        protocols=["auralink/ping/1", "auralink/identify/1"],
    )
    claim = HandleClaim.create(a, "@alice.aura", seq=1, issued_at=T0, expires_at=T0 + 86400)
    rotation = KeyRotation.create(a, b, seq=1, issued_at=T0)
    return {
        "keys": {
            "a": {"seed": SEED_A.hex(), "aura_id": str(a.aura_id), "public_key": a.aura_id.public_key.hex()},
            "b": {"seed": SEED_B.hex(), "aura_id": str(b.aura_id), "public_key": b.aura_id.public_key.hex()},
        },
        "t0": T0,
        "node_record": {"encoded": node.encode().hex(), "signature": node.signature.hex()},
        "handle_claim": {"encoded": claim.encode().hex(), "signature": claim.signature.hex()},
        "key_rotation": {
            "encoded": rotation.encode().hex(),
            "signature": rotation.signature.hex(),
            "new_signature": rotation.new_signature.hex(),
        },
    }


if __name__ == "__main__":
    path = Path(__file__).with_name("identity.json")
    path.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {path}")
