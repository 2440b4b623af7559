"""Sans-I/O parts of the DHT: record validation, the validating store, and the per-peer rate limit.

Theory of operation
-------------------
Every value that enters or leaves the DHT is an encoded AuraLink record (``bytes``, at most
:data:`~auralink.identity.records.RECORD_MAX_SIZE`), stored under the 20-byte key that the record
itself names (:meth:`~auralink.identity.records.NodeRecord.dht_key`). :func:`check_value` is the
one gate: it rejects anything that is not ``bytes``, is too large, does not decode strictly, is
stored under another key than its own, or does not verify at ``now`` (signature, clock skew,
expiry). It raises :class:`~auralink.errors.RemoteProtocolError` for bytes that are not a record
and the :class:`~auralink.errors.IdentityError` family for a record that is not valid.

:class:`RecordStorage` is the kademlia ``IStorage`` the server uses. It keeps records in a
:class:`~auralink.identity.book.RecordBook`, so it applies the book's rules on top of
:func:`check_value`: the higher ``seq`` wins (a replay of an older one raises ``StaleRecord``),
and a handle claim is first come, first served while unexpired (``HandleTaken``). It reads the
time from an injected ``clock`` (wall-clock seconds, because records carry Unix times) and never
holds a network handle.

:class:`PeerRateLimiter` is a token bucket per peer address with an injected ``now``; it tracks a
bounded number of peers (least recently seen are forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kademlia.storage import IStorage

from auralink.errors import RemoteProtocolError
from auralink.identity.book import RecordBook
from auralink.identity.records import MAX_CLOCK_SKEW, RECORD_MAX_SIZE, Record, decode_record

__all__ = ["KEY_SIZE", "PeerRateLimiter", "RateLimit", "RecordStorage", "check_value"]

KEY_SIZE = 20
"""Bytes in a DHT key and a node ID (160 bits, as in the Kademlia paper)."""

Clock = Callable[[], float]


def check_value(key: bytes, value: object, now: float, *, skew: float = MAX_CLOCK_SKEW) -> Record:
    """The record ``value`` encodes, if it is valid at ``now`` and belongs under ``key``.

    Raises :class:`~auralink.errors.RemoteProtocolError` if ``value`` is not an encoded record of
    at most 1000 bytes stored under its own key, or an :class:`~auralink.errors.IdentityError`
    if the record does not verify.
    """
    if not isinstance(value, bytes):
        raise RemoteProtocolError(f"a DHT value must be bytes, got {type(value).__name__}")
    if len(value) > RECORD_MAX_SIZE:
        raise RemoteProtocolError(f"a DHT value of {len(value)} bytes exceeds {RECORD_MAX_SIZE}")
    record = decode_record(value)
    if record.dht_key() != key:
        raise RemoteProtocolError("record stored under another key than its own")
    record.verify(now, skew=skew)
    return record


class RecordStorage(IStorage):  # type: ignore[misc]  # kademlia is untyped
    """A kademlia ``IStorage`` that holds only valid records, with the :class:`RecordBook` rules."""

    def __init__(self, clock: Clock, *, skew: float = MAX_CLOCK_SKEW) -> None:
        self._clock = clock
        self._skew = skew
        self._book = RecordBook(skew=skew)
        self._changed_at: dict[bytes, float] = {}

    def accept(self, key: bytes, value: object) -> bool:
        """Store ``value`` under ``key``; return False if exactly this record was already held.

        Raises :class:`~auralink.errors.RemoteProtocolError` or an
        :class:`~auralink.errors.IdentityError` (``StaleRecord``, ``HandleTaken``...) on rejection.
        """
        now = self._clock()
        record = check_value(key, value, now, skew=self._skew)
        if not self._book.put(record, now):
            return False
        self._changed_at[key] = now
        return True

    def record(self, key: bytes) -> Record | None:
        """The valid record held under ``key``, or None (expired records are dropped here)."""
        record = self._book.get(key, self._clock())
        if record is None:
            self._changed_at.pop(key, None)
        return record

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.accept(key, value)

    def __getitem__(self, key: bytes) -> bytes:
        record = self.record(key)
        if record is None:
            raise KeyError(key)
        return record.encode()

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        record = self.record(key)
        return default if record is None else record.encode()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.record(key) is not None

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def iter_older_than(self, seconds_old: float) -> list[tuple[bytes, bytes]]:
        """Every (key, value) last changed at least ``seconds_old`` seconds ago (due for republishing)."""
        cutoff = self._clock() - seconds_old
        return [(key, value) for key, value in self if self._changed_at.get(key, cutoff) <= cutoff]

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        items = []
        for key in list(self._changed_at):
            record = self.record(key)
            if record is not None:
                items.append((key, record.encode()))
        return iter(items)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """How many requests a single peer may send."""

    rate: float = 200.0
    """Requests per second refilled into each peer's bucket."""
    burst: float = 400.0
    """Bucket size: how many requests a quiet peer may send at once."""
    max_peers: int = 4096
    """Most peers tracked; the least recently seen are forgotten first."""


class PeerRateLimiter:
    """A token bucket per peer address; ``allow`` spends one token or says no."""

    def __init__(self, limit: RateLimit) -> None:
        self._limit = limit
        self._buckets: OrderedDict[tuple[str, int], tuple[float, float]] = OrderedDict()

    def allow(self, peer: tuple[str, int], now: float) -> bool:
        """Spend one of ``peer``'s tokens at ``now``; False if it has none left."""
        tokens, last = self._buckets.pop(peer, (self._limit.burst, now))
        tokens = min(self._limit.burst, tokens + max(0.0, now - last) * self._limit.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[peer] = (tokens, now)
        while len(self._buckets) > self._limit.max_peers:
            self._buckets.popitem(last=False)
        return allowed
