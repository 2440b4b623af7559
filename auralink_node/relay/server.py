"""The relay service: forwards opaque packets between the AuraIDs that hold sessions on it.

Theory of operation
-------------------
A node started with ``auralink-node up --relay`` registers :meth:`RelayService.serve` for
``auralink/relay/1``. Each stream is one *session*: the stream's peer is the session's AuraID,
proven by the mesh connection's handshake, so a session cannot speak for anyone else. After a
:class:`~auralink_node.relay.protocol.Hello` that passes the :class:`RelayPolicy` (open, an
allow-list of AuraIDs, or a shared token), the relay answers
:class:`~auralink_node.relay.protocol.Welcome` with a fresh session key, and from then on
forwards every Send datagram that comes from the session's address with a valid tag
(:meth:`RelayService.datagram_received`) as a Deliver datagram to the destination's session,
naming the sender (see :mod:`auralink_node.relay.protocol`).

The relay never waits and never queues: a packet is dropped (as a router would drop it; QUIC
retransmits) when the sender is over its byte budget (a token bucket per AuraID), would reach
more distinct peers than allowed at once, or has no destination session here. Every outcome is
counted in :attr:`RelayService.stats` and in the node's metrics. The relay sees AuraIDs and
ciphertext: the packets are the end-to-end QUIC datagrams between the two nodes.

Forwarding runs once per relayed packet, so it builds nothing it can look up: sessions are
indexed by address and by key bytes, the tag is checked and made from pre-keyed state
(:class:`~auralink_node.relay.protocol.DatagramKey`), and no AuraID is constructed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from auralink.errors import AuralinkError, RemoteProtocolError
from auralink.identity import AuraID
from auralink.wire import Address
from auralink_node.metrics import RelayResult
from auralink_node.protocols.framing import MessageReader
from auralink_node.relay.protocol import (
    CODEC,
    DELIVER_DATAGRAM,
    PACKET_OFFSET,
    PEER_SLICE,
    SESSION_KEY_SIZE,
    DatagramKey,
    Hello,
    PeerGone,
    Welcome,
)
from auralink_node.transport.streams import ErrorCode, MeshStream

__all__ = ["ForwardResult", "RelayPolicy", "RelayService", "TokenBucket"]

logger = logging.getLogger(__name__)

ForwardResult = RelayResult
"""What became of one packet (the metrics' :data:`~auralink_node.metrics.RelayResult`)."""

HELLO_TIMEOUT = 5.0
"""Seconds a new session has to say Hello."""


@dataclass(frozen=True, slots=True)
class RelayPolicy:
    """Who may use the relay, and how much."""

    access: Literal["open", "allow", "token"] = "open"
    """``open``: anyone; ``allow``: only the AuraIDs in :attr:`allow`; ``token``: Hello must carry :attr:`token`."""
    allow: frozenset[AuraID] = frozenset()
    """AuraIDs admitted when :attr:`access` is ``allow``."""
    token: bytes = b""
    """The shared token when :attr:`access` is ``token``."""
    bytes_per_second: int = 12_500_000
    """Each session's relayed-traffic rate (token bucket refill), 100 Mbit/s by default."""
    burst_bytes: int | None = None
    """Each session's bucket size; by default one second of :attr:`bytes_per_second` (at least 64 kB)."""
    max_peers: int = 64
    """Distinct destinations one session may reach within :attr:`peer_idle` seconds."""
    peer_idle: float = 30.0
    """Seconds after its last packet that a destination stops counting against :attr:`max_peers`."""

    def admits(self, peer: AuraID, token: bytes) -> str | None:
        """None if ``peer`` may open a session, else why not."""
        if self.access == "allow" and peer not in self.allow:
            return "not on this relay's allow-list"
        if self.access == "token" and (not self.token or token != self.token):
            return "wrong or missing access token"
        return None


class TokenBucket:
    """A byte budget that refills at ``rate`` per second up to ``burst`` (a pure core; takes ``now``)."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last = now

    def take(self, amount: int, now: float) -> bool:
        """Spend ``amount`` if the bucket holds it at ``now``."""
        self._tokens = min(self._burst, self._tokens + max(0.0, now - self._last) * self._rate)
        self._last = now
        if self._tokens < amount:
            return False
        self._tokens -= amount
        return True


@dataclass
class _Session:
    peer: AuraID
    stream: MeshStream
    bucket: TokenBucket
    key: DatagramKey
    address: Address
    destinations: OrderedDict[bytes, float] = field(default_factory=OrderedDict)
    """Recent destinations (their key bytes), least recently used first, with their last packet's time."""
    gone_sent: dict[AuraID, float] = field(default_factory=dict)


class RelayService:
    """The sessions of one relay node and the forwarding between them."""

    def __init__(
        self,
        policy: RelayPolicy,
        *,
        clock: Callable[[], float],
        banned: Callable[[AuraID], bool] | None = None,
        send_raw: Callable[[bytes, Address], None],
    ) -> None:
        self.policy = policy
        self._banned = banned
        self._send_raw = send_raw
        self._by_address: dict[Address, _Session] = {}
        self._by_key: dict[bytes, _Session] = {}
        self._clock = clock
        self.sessions: dict[AuraID, _Session] = {}
        self.stats: Counter[str] = Counter()
        """Packets by outcome (:data:`ForwardResult`), plus ``bytes`` forwarded and ``refused`` sessions."""

    async def serve(self, stream: MeshStream) -> None:
        """Run one session (the ``auralink/relay/1`` stream handler)."""
        peer = stream.peer
        assert peer is not None, "streams are dispatched only after authentication"
        reader = MessageReader(stream, CODEC)
        async with asyncio.timeout(HELLO_TIMEOUT):
            hello = await reader.expect(Hello)
        refusal = self.policy.admits(peer, hello.token)
        if refusal is None and self._banned is not None and self._banned(peer):
            refusal = "banned by this relay's reputation book"
        if refusal is not None:
            self.stats["refused"] += 1
            logger.info("relay session for %s refused: %s", peer.short(), refusal)
            stream.reset(ErrorCode.REFUSED)
            return
        burst = self.policy.burst_bytes or max(self.policy.bytes_per_second, 65_536)
        key = os.urandom(SESSION_KEY_SIZE)
        bucket = TokenBucket(self.policy.bytes_per_second, burst, self._clock())
        address = stream.connection.remote
        session = _Session(peer, stream, bucket, DatagramKey(key), address)
        previous = self.sessions.get(peer)
        if previous is not None:  # the peer reconnected: the newest session wins
            previous.stream.reset(ErrorCode.CANCELLED)
            self._by_address.pop(previous.address, None)
        self.sessions[peer] = session
        self._by_key[peer.public_key] = session
        self._by_address[address] = session
        stream.write(CODEC.encode(Welcome(self.policy.bytes_per_second, self.policy.max_peers, key)))
        try:  # the session lasts as long as its stream, which the node never writes to again
            message = await reader.next()
            if message is not None:
                raise RemoteProtocolError(f"relay session: unexpected {type(message).__name__} after Hello")
        except AuralinkError as exc:
            logger.debug("relay session for %s ended: %s", peer.short(), exc)
        finally:
            if self.sessions.get(peer) is session:
                del self.sessions[peer]
                del self._by_key[peer.public_key]
            if self._by_address.get(session.address) is session:
                del self._by_address[session.address]

    def datagram_received(self, data: bytes, addr: Address, via: object) -> None:
        """A Send datagram on the relay's socket: forward it if its session and tag check out."""
        session = self._by_address.get(addr)
        if session is None:
            self.stats["unknown_session"] += 1
            return
        try:
            session.key.check(data)
        except AuralinkError:
            self.stats["bad_datagram"] += 1
            return
        dst_key = data[PEER_SLICE]
        target = self._by_key.get(dst_key)  # the destination's own AuraID, if it has a session: none built
        self.forward(session, target.peer if target is not None else AuraID(dst_key), data[PACKET_OFFSET:])

    def forward(self, session: _Session, dst: AuraID, packet: bytes) -> ForwardResult:
        """Forward one packet from ``session`` to ``dst`` (or drop it, and say why)."""
        result = self._route(session, dst, packet)
        stats = self.stats
        stats[result] += 1
        if result == "forwarded":
            stats["bytes"] += len(packet)
        return result

    def _route(self, session: _Session, dst: AuraID, packet: bytes) -> ForwardResult:
        now = self._clock()
        if not session.bucket.take(len(packet), now):
            return "quota"
        destinations, dst_key = session.destinations, dst.public_key
        if dst_key in destinations:
            destinations.move_to_end(dst_key)
        else:
            if len(destinations) >= self.policy.max_peers:  # only a full table needs its idle peers dropped
                idle_since = now - self.policy.peer_idle
                while destinations and next(iter(destinations.values())) < idle_since:
                    destinations.popitem(last=False)
            if len(destinations) >= self.policy.max_peers:
                return "peer_limit"
        destinations[dst_key] = now
        target = self._by_key.get(dst_key)
        if target is None:
            if now - session.gone_sent.get(dst, -1e9) >= 1.0:  # say so at most once a second
                session.gone_sent[dst] = now
                if len(session.gone_sent) > self.policy.max_peers:
                    session.gone_sent.pop(next(iter(session.gone_sent)))
                session.stream.write(CODEC.encode(PeerGone(dst)))
            return "no_session"
        self._send_raw(target.key.seal(DELIVER_DATAGRAM, session.peer.public_key, packet), target.address)
        return "forwarded"
