"""AuraID identities: keys, handles, signed records and the keystore.

* :mod:`auralink.identity.keys`: :class:`AuraID` and :class:`Identity` (Ed25519).
* :mod:`auralink.identity.handles`: ``@name.aura`` parsing and normalisation.
* :mod:`auralink.identity.records`: :class:`NodeRecord`, :class:`HandleClaim`, :class:`KeyRotation`.
* :mod:`auralink.identity.book`: :class:`RecordBook`, a validating in-memory record store.
* :mod:`auralink.identity.keystore`: :class:`Keystore`, the 0600 key file.
"""

from auralink.identity.book import RecordBook
from auralink.identity.handles import parse_handle
from auralink.identity.keys import AuraID, Identity, verify_signature
from auralink.identity.keystore import KdfLimits, Keystore
from auralink.identity.records import (
    RECORD_MAX_SIZE,
    HandleClaim,
    KeyRotation,
    NodeRecord,
    Record,
    RelayAddress,
    decode_record,
    follow_rotations,
    pull_record,
    push_record,
)

__all__ = [
    "RECORD_MAX_SIZE",
    "AuraID",
    "HandleClaim",
    "Identity",
    "KdfLimits",
    "KeyRotation",
    "Keystore",
    "NodeRecord",
    "Record",
    "RecordBook",
    "RelayAddress",
    "decode_record",
    "follow_rotations",
    "parse_handle",
    "pull_record",
    "push_record",
    "verify_signature",
]
