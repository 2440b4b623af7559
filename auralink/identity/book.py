"""A validating record store: the rules every holder of records applies.

Theory of operation
-------------------
:class:`RecordBook` is the sans-I/O core behind every place that keeps signed records: the
DHT's storage, a client's cache, and the in-memory demo. It keeps at most one record per DHT
key and accepts a record only if

1. it verifies at ``now`` (signature, clock skew, expiry);
2. it is not older than what is held: the higher ``seq`` wins, and a replay of the record
   already held is a no-op;
3. for a handle claim, no *other* key holds an unexpired claim to the same handle, unless a
   verified key rotation leads from the holder's key to the claimant's (first come, first
   served while the claim is kept alive; see ``docs/concepts/identity.md``).

Rejections raise the specific :class:`~auralink.errors.IdentityError`, so the caller can count
misbehaving peers. Expired records are dropped lazily when read, and in bulk by :meth:`expire`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from auralink.errors import HandleTaken, StaleRecord
from auralink.identity.keys import AuraID
from auralink.identity.records import (
    MAX_CLOCK_SKEW,
    HandleClaim,
    KeyRotation,
    NodeRecord,
    Record,
    follow_rotations,
    handle_dht_key,
)

__all__ = ["RecordBook"]


def _expired(record: Record, now: float) -> bool:
    return not isinstance(record, KeyRotation) and record.expires_at <= now


class RecordBook:
    """Keeps the best valid record per DHT key."""

    def __init__(self, *, skew: float = MAX_CLOCK_SKEW) -> None:
        self._skew = skew
        self._records: dict[bytes, Record] = {}

    def __len__(self) -> int:
        return len(self._records)

    def put(self, record: Record, now: float) -> bool:
        """Store ``record`` if it is valid and newer; return False if it was already held.

        Raises :class:`~auralink.errors.SignatureError`, ``RecordExpired``, ``RecordFromFuture``,
        :class:`~auralink.errors.StaleRecord` or :class:`~auralink.errors.HandleTaken`.
        """
        record.verify(now, skew=self._skew)
        key = record.dht_key()
        current = self.get(key, now)
        if current is not None:
            if current == record:
                return False
            if (
                isinstance(record, HandleClaim)
                and isinstance(current, HandleClaim)
                and current.aura_id != record.aura_id
                and self.current_key(current.aura_id, now) != record.aura_id
            ):
                until = datetime.fromtimestamp(current.expires_at, UTC)  # bounded: verified, so lifetime-capped
                raise HandleTaken(
                    f"{record.handle} is held by {current.aura_id.short()} until {until:%Y-%m-%d %H:%M:%S} UTC; "
                    f"{record.aura_id.short()} cannot claim it"
                )
            if not record.supersedes(current):
                raise StaleRecord(f"a record with seq {current.seq} is already held (got seq {record.seq})")
        self._records[key] = record
        return True

    def get(self, key: bytes, now: float) -> Record | None:
        """The record held under a DHT key, or None (expired records are dropped)."""
        record = self._records.get(key)
        if record is not None and _expired(record, now):
            del self._records[key]
            return None
        return record

    def node(self, aura_id: AuraID, now: float) -> NodeRecord | None:
        """The node record of ``aura_id``, if one is held and valid."""
        record = self.get(aura_id.dht_key(), now)
        return record if isinstance(record, NodeRecord) else None

    def claim(self, handle: str, now: float) -> HandleClaim | None:
        """The claim to ``handle``, if one is held and valid."""
        record = self.get(handle_dht_key(handle), now)
        return record if isinstance(record, HandleClaim) else None

    def rotations(self) -> list[KeyRotation]:
        """Every key rotation held."""
        return [r for r in self._records.values() if isinstance(r, KeyRotation)]

    def current_key(self, aura_id: AuraID, now: float) -> AuraID:
        """Follow held rotations from ``aura_id`` to the key in use now."""
        return follow_rotations(aura_id, self.rotations(), now)

    def resolve(self, handle: str, now: float) -> NodeRecord | None:
        """Handle to node record: the claim, then rotations, then the node record of the current key."""
        claim = self.claim(handle, now)
        if claim is None:
            return None
        return self.node(self.current_key(claim.aura_id, now), now)

    def expire(self, now: float) -> int:
        """Drop every expired record; return how many were dropped."""
        dead = [key for key, record in self._records.items() if _expired(record, now)]
        for key in dead:
            del self._records[key]
        return len(dead)
