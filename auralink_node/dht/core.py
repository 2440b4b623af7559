"""Sans-I/O parts of the DHT: record validation, the validating store, the per-peer rate limit, the
round-trip estimator and the state of one iterative lookup.

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

:class:`RttEstimator` is TCP's retransmission-timeout estimator (RFC 6298, section 2) fed with the
round-trip times of answered RPCs: ``rto = srtt + 4 * rttvar``, clamped to ``[floor, ceiling]``.

:class:`Lookup` is the state of one iterative node or value lookup (Kademlia paper, section 2.3)
without any I/O: the adapter asks it which peers to query now (``queries_due(now, patience)``),
tells it about replies and failures, and asks whether it has ``finished(now)``. Unlike kademlia's
``SpiderCrawl``, which sends ``alpha`` queries and waits for the slowest before the next round, it
keeps ``alpha`` queries *active*: a reply frees a slot at once, and a query unanswered for longer
than its ``patience`` (the RTO) stops counting as active, so a dead contact holds up at most one
slot for one RTO (libtorrent's "short timeout"; libp2p's lookups also run without rounds). A slow
peer that answers later is still used. The lookup is over when the ``k`` closest
peers not known to be dead or slow have all replied, or when its query budget is spent.
"""

from __future__ import annotations

import bisect
import enum
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from kademlia.node import Node
from kademlia.storage import IStorage

from auralink.errors import LocalProtocolError, RemoteProtocolError
from auralink.identity.book import RecordBook
from auralink.identity.records import MAX_CLOCK_SKEW, RECORD_MAX_SIZE, Record, decode_record

__all__ = [
    "KEY_SIZE",
    "Lookup",
    "PeerRateLimiter",
    "RateLimit",
    "RecordStorage",
    "RttEstimator",
    "check_value",
]

KEY_SIZE = 20
"""Bytes in a DHT key and a node ID (160 bits, as in the Kademlia paper)."""

Clock = Callable[[], float]


def check_value(key: bytes, value: object, now: float, *, skew: float = MAX_CLOCK_SKEW) -> Record:
    """The record ``value`` encodes, if it is valid at ``now`` and belongs under ``key``.

    Raises :class:`~auralink.errors.RemoteProtocolError` if ``value`` is not an encoded record of
    at most 1000 bytes stored under its own key, or an :class:`~auralink.errors.IdentityError`
    if the record does not verify.
    """
    record = _decode_for_key(key, value)
    record.verify(now, skew=skew)
    return record


def _decode_for_key(key: bytes, value: object) -> Record:
    """The record ``value`` encodes, if it is at most 1000 bytes and belongs under ``key`` (not verified)."""
    if not isinstance(value, bytes):
        raise RemoteProtocolError(f"a DHT value must be bytes, got {type(value).__name__}")
    if len(value) > RECORD_MAX_SIZE:
        raise RemoteProtocolError(f"a DHT value of {len(value)} bytes exceeds {RECORD_MAX_SIZE}")
    record = decode_record(value)
    if record.dht_key() != key:
        raise RemoteProtocolError("record stored under another key than its own")
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
        record = _decode_for_key(key, value)
        if not self._book.put(record, now):  # the book verifies it (signature, skew, expiry)
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


class RttEstimator:
    """Smoothed round-trip time and the timeout it implies, as TCP computes its RTO (RFC 6298, section 2).

    Every sample is unambiguous (an RPC is never retransmitted, so Karn's rule has nothing to
    exclude). Before the first sample the timeout is ``ceiling``, as RFC 6298 starts at 1 s.
    """

    ALPHA = 1 / 8
    """Gain of the smoothed RTT (RFC 6298, section 2.3)."""
    BETA = 1 / 4
    """Gain of the RTT variation (RFC 6298, section 2.3)."""
    K = 4
    """Multiple of the variation added to the smoothed RTT."""

    def __init__(self, *, floor: float, ceiling: float) -> None:
        if not 0 < floor <= ceiling:
            raise LocalProtocolError(f"an RTO needs 0 < floor <= ceiling, got {floor} and {ceiling}")
        self.floor = floor
        self.ceiling = ceiling
        self.srtt: float | None = None
        """Smoothed round-trip time in seconds; None before the first sample."""
        self.rttvar = 0.0
        """Smoothed mean deviation of the round-trip time, in seconds."""

    def sample(self, rtt: float) -> None:
        """Fold in one measured round-trip time (seconds)."""
        rtt = max(0.0, rtt)
        if self.srtt is None:  # RFC 6298, section 2.2
            self.srtt, self.rttvar = rtt, rtt / 2
        else:  # section 2.3: RTTVAR first, with the old SRTT
            self.rttvar = (1 - self.BETA) * self.rttvar + self.BETA * abs(self.srtt - rtt)
            self.srtt = (1 - self.ALPHA) * self.srtt + self.ALPHA * rtt

    @property
    def rto(self) -> float:
        """``srtt + 4 * rttvar``, clamped to ``[floor, ceiling]`` (``ceiling`` before any sample)."""
        if self.srtt is None:
            return self.ceiling
        return min(self.ceiling, max(self.floor, self.srtt + self.K * self.rttvar))


class PeerState(enum.Enum):
    """Where one peer stands in a :class:`Lookup`."""

    HEARD = "heard"
    """Known (from the routing table or a reply), not asked yet."""
    WAITING = "waiting"
    """Asked; no reply yet."""
    REPLIED = "replied"
    """Answered."""
    FAILED = "failed"
    """Did not answer within the RPC timeout, or answered with garbage."""


class Lookup:
    """The sans-I/O state of one iterative lookup for ``target`` (Kademlia paper, section 2.3).

    Peers are ranked by XOR distance to ``target``. The *window* is the ``ksize`` closest peers
    that have not failed and are not slow (asked longer than their patience ago without a reply).
    Up to ``alpha`` queries are active at once; the closest un-asked peers in the window are asked
    first. The lookup has finished when every peer in the window has replied, or when
    ``max_queries`` were sent and no active query remains.

    Reputation: ``suspect(peer_id)``, if given, names peers whose reputation is poor. They stay
    in the ranking (the window is still the ``ksize`` closest, so the lookup converges as
    Kademlia's does), but within the window every trusted un-asked peer is asked before any
    suspect one: a peer that served invalid records spends our query budget last.
    """

    def __init__(
        self,
        target: bytes,
        peers: Iterable[Node],
        *,
        ksize: int,
        alpha: int,
        max_queries: int,
        suspect: Callable[[bytes], bool] | None = None,
    ) -> None:
        if min(ksize, alpha, max_queries) < 1:
            raise LocalProtocolError("a lookup needs ksize, alpha and max_queries of at least 1")
        self._suspect = suspect
        self.target = int.from_bytes(target, "big")
        self.ksize = ksize
        self.alpha = alpha
        self.max_queries = max_queries
        self.queried = 0
        """Queries sent so far."""
        self._ranked: list[tuple[int, bytes]] = []
        self._nodes: dict[bytes, Node] = {}
        self._state: dict[bytes, PeerState] = {}
        self._slow_at: dict[bytes, float] = {}  # for WAITING peers: when they stop counting as active
        self.add(peers)

    def add(self, contacts: Iterable[Node]) -> None:
        """Learn about ``contacts``; a peer already known keeps its state and its first address."""
        for contact in contacts:
            if contact.id in self._nodes:
                continue
            self._nodes[contact.id] = contact
            self._state[contact.id] = PeerState.HEARD
            bisect.insort(self._ranked, (contact.long_id ^ self.target, contact.id))

    def state(self, peer_id: bytes) -> PeerState | None:
        """Where ``peer_id`` stands, or None if this lookup never heard of it."""
        return self._state.get(peer_id)

    def _active(self, peer_id: bytes, now: float) -> bool:
        return self._state[peer_id] is PeerState.WAITING and self._slow_at[peer_id] > now

    def _window(self, now: float) -> list[bytes]:
        window = []
        for _, peer_id in self._ranked:
            state = self._state[peer_id]
            if state is PeerState.FAILED or (state is PeerState.WAITING and not self._active(peer_id, now)):
                continue
            window.append(peer_id)
            if len(window) == self.ksize:
                break
        return window

    def active(self, now: float) -> int:
        """Queries sent less than their patience ago and not answered yet."""
        return sum(1 for peer_id in self._slow_at if self._active(peer_id, now))

    def queries_due(self, now: float, patience: float) -> list[Node]:
        """The peers to ask now, closest first; each counts as active until ``now + patience``."""
        free = self.alpha - self.active(now)
        due: list[Node] = []
        window = self._window(now)
        if self._suspect is not None:
            suspect = self._suspect
            window.sort(key=suspect)  # stable: trusted first, each group closest first
        for peer_id in window:
            if len(due) >= free or self.queried >= self.max_queries:
                break
            if self._state[peer_id] is PeerState.HEARD:
                self._state[peer_id] = PeerState.WAITING
                self._slow_at[peer_id] = now + patience
                self.queried += 1
                due.append(self._nodes[peer_id])
        return due

    def replied(self, peer_id: bytes, contacts: Iterable[Node] = ()) -> None:
        """``peer_id`` answered (with ``contacts``, for a node lookup); late answers from slow peers count."""
        if self._state.get(peer_id) is PeerState.WAITING:
            self._state[peer_id] = PeerState.REPLIED
            del self._slow_at[peer_id]
            self.add(contacts)

    def failed(self, peer_id: bytes) -> None:
        """``peer_id`` did not answer in time, or answered with something unusable."""
        if self._state.get(peer_id) is PeerState.WAITING:
            self._state[peer_id] = PeerState.FAILED
            del self._slow_at[peer_id]

    def finished(self, now: float) -> bool:
        """Whether the lookup is over: the window has all replied, or the budget is spent and nothing is active."""
        if all(self._state[peer_id] is PeerState.REPLIED for peer_id in self._window(now)):
            return True
        return self.queried >= self.max_queries and self.active(now) == 0

    def next_deadline(self, now: float) -> float | None:
        """The next time after ``now`` at which an active query turns slow, or None."""
        return min((at for at in self._slow_at.values() if at > now), default=None)

    def closest(self) -> list[Node]:
        """The ``ksize`` closest peers that replied, closest first."""
        replied = (self._nodes[peer_id] for _, peer_id in self._ranked if self._state[peer_id] is PeerState.REPLIED)
        return [node for node, _ in zip(replied, range(self.ksize), strict=False)]
