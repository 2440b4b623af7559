"""Paths: which way a connection's packets go (direct or through a relay), hole punching, and why.

Theory of operation
-------------------
Every authenticated connection gets a :class:`PeerPaths`: a
:class:`~auralink_node.routing.PathContext` of candidate paths to the peer, a
:class:`~auralink_node.routing.LearnedSelector` that picks one, and the probes that feed it.
The QUIC connection never notices a change: :meth:`PeerConnection.set_path
<auralink_node.transport.connection.PeerConnection.set_path>` only redirects its datagrams (the
iroh "magicsock" design).

1. **Offer.** Once the connection is up, the dialler opens ``auralink/paths/1`` and both sides
   send an :class:`Offer`: a random 16-byte secret and the addresses they can be reached at
   (those they listen on, and those peers observed for them, which behind a NAT is the public
   mapping). The two secrets make the key that authenticates path probes.
2. **Punch.** Both sides then probe every direct candidate of the other, several times a second
   for :data:`PUNCH_SECONDS` (as libp2p's DCUtR does, with the relayed connection as the
   coordination channel). A probe that leaves through our NAT opens the mapping that the peer's
   probes need to come in, so on endpoint-independent NATs whose routers filter unsolicited
   packets, the probes meet. A probe that arrives from an address we did not know adds it as a
   candidate: it is the peer's mapping as our side sees it.
3. **Select.** Probe answers are RTT samples and silence is loss; the selector moves traffic to
   a validated direct path when it is better, back to the relay when the direct path goes
   silent (within 2 s), and says why. ``auralink-node why TARGET`` prints :meth:`PeerPaths.why`.

Probes are raw datagrams on the node's sockets (first byte ``0x02`` probe, ``0x03`` answer),
or packets through a relay for relay paths: ``type | tx_id[8] | sender key[32] | mac[16]``,
where the MAC is HMAC-SHA256 under the connection's probe key, so only the peer can answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from auralink.errors import AuralinkError, ConnectionClosed, RemoteProtocolError
from auralink.identity import AuraID, RelayAddress
from auralink.identity.records import MAX_RELAYS
from auralink.wire import Address, Buffer, MessageCodec
from auralink_node.protocols.framing import MessageReader
from auralink_node.reputation import Role
from auralink_node.routing import Decision, LearnedSelector, PathContext, PathSelector
from auralink_node.transport import MeshStream, PeerConnection
from auralink_node.transport.connection import DatagramSender
from auralink_node.transport.endpoint import virtual_address

if TYPE_CHECKING:
    from auralink_node.node import Node

__all__ = ["PATHS_PROTOCOL", "PROBE", "PROBE_ACK", "Offer", "PathManager", "PeerPaths"]

logger = logging.getLogger(__name__)

PATHS_PROTOCOL = "auralink/paths/1"
"""The stream protocol that exchanges probe secrets and candidate addresses."""
PROBE, PROBE_ACK = 0x02, 0x03
"""First bytes of path probes and their answers."""
PUNCH_SECONDS = 4.0
"""How long both sides probe every direct candidate after the offers."""
PUNCH_INTERVAL = 0.1
"""Seconds between punch rounds."""
KEEPALIVE_INTERVAL = 0.4
"""Seconds between probes on the path in use (silence is detected from these)."""
MAX_CANDIDATES = 16
"""Most direct candidates per peer."""
RELAY_SESSION_WAIT = 10.0
"""Seconds to wait for a session on one of the peer's relays before leaving it out."""
_PROBE_SIZE = 1 + 8 + 32 + 16
_MAX_PENDING = 256


def _encode_addresses(buf: Buffer, addresses: list[Address]) -> None:
    buf.push_varint(len(addresses))
    for address in addresses:
        buf.push_length_prefixed(str(address).encode(), 64, "address")


def _decode_addresses(buf: Buffer) -> list[Address]:
    count = buf.pull_varint()
    if count > MAX_CANDIDATES:
        raise RemoteProtocolError(f"{count} candidate addresses; at most {MAX_CANDIDATES}")
    return _decode_addresses_exactly(buf, count)


def _decode_relays(buf: Buffer) -> list[RelayAddress]:
    count = buf.pull_varint()
    if count > MAX_RELAYS:
        raise RemoteProtocolError(f"{count} relays; at most {MAX_RELAYS}")
    out = []
    for _ in range(count):
        key = buf.pull_bytes(AuraID.SIZE)
        (address,) = _decode_addresses_exactly(buf, 1)
        out.append(RelayAddress(AuraID(key), address))
    return out


def _decode_addresses_exactly(buf: Buffer, count: int) -> list[Address]:
    out = []
    for _ in range(count):
        raw = buf.pull_length_prefixed(64, "address")
        try:
            out.append(Address.parse(raw.decode("ascii")))
        except (UnicodeDecodeError, AuralinkError) as exc:
            raise RemoteProtocolError(f"bad address {raw!r}") from exc
    return out


@dataclass(frozen=True, slots=True)
class Offer:
    """A probe secret, the addresses the sender can be reached at, and its relays."""

    TYPE: ClassVar[int] = 1
    secret: bytes
    addresses: list[Address]
    relays: list[RelayAddress]

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        secret = buf.pull_bytes(16)
        return cls(secret, _decode_addresses(buf), _decode_relays(buf))

    def push(self, buf: Buffer) -> None:
        buf.push_bytes(self.secret)
        _encode_addresses(buf, self.addresses[:MAX_CANDIDATES])
        buf.push_varint(min(len(self.relays), MAX_RELAYS))
        for relay in self.relays[:MAX_RELAYS]:
            buf.push_bytes(relay.aura_id.public_key)
            buf.push_length_prefixed(str(relay.address).encode(), 64, "address")


CODEC = MessageCodec(PATHS_PROTOCOL, [Offer], max_size=2048)


def _probe(kind: int, tx_id: bytes, sender: AuraID, key: bytes) -> bytes:
    body = bytes([kind]) + tx_id + sender.public_key
    return body + hmac.new(key, body, hashlib.sha256).digest()[:16]


class PeerPaths:
    """The candidate paths of one connection, the selector's state, and the probes in flight."""

    def __init__(self, manager: PathManager, conn: PeerConnection, selector: PathSelector) -> None:
        assert conn.peer is not None
        self.manager = manager
        self.conn = conn
        self.peer: AuraID = conn.peer
        self.ctx = PathContext()
        self.selector = selector
        self.key: bytes | None = None
        self.secret = os.urandom(16)
        self.senders: dict[str, tuple[DatagramSender, Address]] = {}
        self.pending: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self.decision: Decision | None = None
        self.punch_until = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._last_probe: dict[str, float] = {}
        self._decided = asyncio.Event()
        self.closed = False
        now = manager.now()
        path = self._add(conn.path, conn.sender, conn.remote)
        self.ctx.start(path, now)

    def _add(self, path: str, sender: DatagramSender, remote: Address) -> str:
        name = self.ctx.add_path(path, self.manager.now())
        self.senders.setdefault(name, (sender, remote))
        return name

    def add_direct(self, address: Address) -> str | None:
        """Add a direct candidate at ``address`` (if we have a socket for its IP version)."""
        try:
            sock = self.manager.node.endpoint._socket_for(address)
        except AuralinkError:
            return None
        if address.port == 0 or sum(1 for p in self.senders if p.startswith("direct:")) >= MAX_CANDIDATES:
            return None
        return self._add(f"direct:{address}", sock, address)

    def add_relay(self, sender: DatagramSender, *, reputation: float | None = None, banned: bool = False) -> str:
        """Add the relay path that ``sender`` takes, with the relay's reputation."""
        name = self._add(sender.path_name, sender, virtual_address(self.peer))
        self.ctx.set_reputation(name, reputation, banned=banned)
        return name

    # -- probes -----------------------------------------------------------------------------
    def probe(self, path: str, now: float) -> None:
        """Send one probe on ``path`` (needs the key from the offers)."""
        if self.closed or self.key is None or path not in self.senders:
            return
        tx_id = os.urandom(8)
        self.pending[tx_id] = (path, now)
        while len(self.pending) > _MAX_PENDING:
            self.pending.popitem(last=False)
        sender, remote = self.senders[path]
        sender.sendto(_probe(PROBE, tx_id, self.manager.node.aura_id, self.key), remote)
        self._last_probe[path] = now
        self.ctx.sent(path, now, probe=True)

    def answered(self, tx_id: bytes, now: float) -> None:
        entry = self.pending.pop(tx_id, None)
        if entry is None:
            return
        path, sent_at = entry
        if path in self.ctx:
            self.ctx.observe(path, now, rtt=max(now - sent_at, 1e-6))
            self.decide(now)

    # -- decisions --------------------------------------------------------------------------
    def decide(self, now: float) -> None:
        """Ask the selector, apply its choice, send the probes it wants, and re-arm the timer."""
        if self.closed or self.conn.is_closed:
            return
        decision = self.selector.select(self.ctx, now)
        if logger.isEnabledFor(logging.DEBUG) and (
            self.decision is None or self.decision.reason is not decision.reason
        ):
            logger.debug(
                "%s on %s: %s: %s; probing %s",
                self.peer.short(),
                decision.path,
                decision.reason.value,
                decision.explanation,
                list(decision.probes),
            )
        self.decision = decision
        for path in decision.probes:
            self.probe(path, now)
        if decision.path is not None and decision.switched:
            sender, remote = self.senders[decision.path]
            self.conn.set_path(sender, remote)
            logger.info("%s: %s -> %s (%s)", self.peer.short(), decision.previous, decision.path, decision.reason.value)
        current = self.ctx.current
        if current is not None and now - self._last_probe.get(current, -1e9) >= KEEPALIVE_INTERVAL:
            self.probe(current, now)  # keep measuring the path in use: its silence is the failover signal
        self._schedule(min(decision.next_timer, now + KEEPALIVE_INTERVAL))
        decided, self._decided = self._decided, asyncio.Event()
        decided.set()

    async def wait_for_path(self, prefix: str, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until the connection's path starts with ``prefix``."""
        async with asyncio.timeout(timeout):
            while not self.conn.path.startswith(prefix):
                await self._decided.wait()

    def _schedule(self, at: float) -> None:
        if self.closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + max(0.0, at - self.manager.now()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self.manager.now()
        if now < self.punch_until:  # punch: every path not yet answered, relays too (the peer may lack the key yet)
            for path in self.senders:
                if self.ctx.estimate(path, now).samples == 0:
                    self.probe(path, now)
            self.decide(now)
            self._schedule(min(now + PUNCH_INTERVAL, self.punch_until))
            return
        self.decide(now)

    def close(self) -> None:
        """Stop probing and choosing for good (the connection ended, or its path is pinned)."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def pause(self) -> None:
        """Stop probing and choosing for now (while another connection to the peer is in use)."""
        self.close()

    def resume(self) -> None:
        """Probe and choose again, with the key and paths this connection had."""
        if self.conn.is_closed or not self.closed:
            return
        self.closed = False
        if self.key is not None:  # else the offers are still on their way: their end starts the punch
            self.decide(self.manager.now())

    def why(self) -> dict[str, Any]:
        """The current path, the candidates with their scores, and the switches so far."""
        decision = self.decision or self.selector.select(self.ctx, self.manager.now())
        return {
            "peer": str(self.peer),
            "path": self.conn.path,
            "relayed": self.conn.is_relayed,
            "decision": decision.to_dict(),
            "history": [
                {"at": s.at, "from": s.previous, "to": s.path, "reason": s.reason.value, "detail": s.detail}
                for s in self.ctx.history
            ],
        }


class PathManager:
    """The :class:`PeerPaths` of every connection of one node, and the probe socket handler.

    Two connections to one peer can both authenticate (a dial racing two paths, or both sides
    dialling at once). Each gets its :class:`PeerPaths`, keyed by its own offers, but only the
    paths of the connection the endpoint uses for the peer
    (:meth:`~auralink_node.transport.Endpoint.connection_to`, which both ends choose by the same
    rule) are managed: probed and steered. The others are paused, keys and all, and take over if
    the endpoint moves to their connection (the one in use closed, say).
    """

    def __init__(self, node: Node, *, seed: int | None = None, clock: Any = time.monotonic) -> None:
        self.node = node
        self.now = clock
        self._rng = random.Random(seed)
        self.peers: dict[AuraID, PeerPaths] = {}
        """The managed paths of each peer: those of the connection in use."""
        self._all: dict[AuraID, dict[PeerConnection, PeerPaths]] = {}
        """The paths of every live connection, by peer."""
        node.endpoint.on_raw_datagram((PROBE, PROBE_ACK), self._datagram)

    def connection_ready(self, conn: PeerConnection) -> None:
        """Give a new connection its paths (the dialler also starts the offers)."""
        paths = self._paths_of(conn)
        if conn.is_client:
            self.node.spawn_background(self._offer(paths, initiator=True))

    def connection_closed(self, conn: PeerConnection) -> None:
        """Forget a connection's paths; the peer's other live connection, if any, is managed now."""
        if conn.peer is None:
            return
        of_peer = self._all.get(conn.peer, {})
        paths = of_peer.pop(conn, None)
        if paths is not None:
            paths.close()
            if not of_peer:
                del self._all[conn.peer]
            self._follow(conn.peer)

    async def serve(self, stream: MeshStream) -> None:
        """The ``auralink/paths/1`` handler (the side that accepted the connection)."""
        if stream.connection.is_closed:
            stream.reset()
            return
        await self._exchange(self._paths_of(stream.connection), stream, initiator=False)

    def _paths_of(self, conn: PeerConnection) -> PeerPaths:
        assert conn.peer is not None
        of_peer = self._all.setdefault(conn.peer, {})
        paths = of_peer.get(conn)
        if paths is None:
            paths = of_peer[conn] = PeerPaths(self, conn, LearnedSelector(random.Random(self._rng.random())))
            paths.pause()  # until _follow finds it is the connection in use
            self._follow(conn.peer)
        return paths

    def _follow(self, peer: AuraID) -> None:
        """Manage the paths of the connection the endpoint uses for ``peer``; pause the others."""
        in_use = self.node.endpoint.connection_to(peer)
        managed = self.peers.get(peer)
        if managed is not None and managed.conn is in_use:
            return
        if managed is not None:
            del self.peers[peer]
            managed.pause()
        paths = None if in_use is None else self._all.get(peer, {}).get(in_use)
        if paths is not None:
            self.peers[peer] = paths
            paths.resume()

    async def _offer(self, paths: PeerPaths, *, initiator: bool) -> None:
        try:
            stream = await paths.conn.open_stream(PATHS_PROTOCOL)
        except ConnectionClosed:  # closed on purpose meanwhile (it lost a dial race, say): nothing to offer
            return
        await self._exchange(paths, stream, initiator=initiator)

    async def _exchange(self, paths: PeerPaths, stream: MeshStream, *, initiator: bool) -> None:
        node = self.node
        ours = [*node.advertised_addresses(), *(a for a, _ in node.observed.most_common(4))]
        offer_ours = Offer(paths.secret, list(dict.fromkeys(ours))[:MAX_CANDIDATES], node.home_relays())
        stream.write(CODEC.encode(offer_ours))
        reader = MessageReader(stream, CODEC)
        async with asyncio.timeout(10.0):
            offer = await reader.expect(Offer)
        stream.write_eof()
        first, second = (paths.secret, offer.secret) if initiator else (offer.secret, paths.secret)
        paths.key = hashlib.sha256(b"auralink-paths-v1" + first + second).digest()
        for address in offer.addresses:
            paths.add_direct(address)
        record = node.book.node(paths.peer, node.wall_clock())
        relays = {r.aura_id: r for r in (*offer.relays, *(record.relays if record is not None else ()))}
        for relay in relays.values():  # every relay of the peer is a candidate path (sessions opened as needed)
            if relay.aura_id not in (node.aura_id, paths.peer):
                node.spawn_background(self._add_relay(paths, relay))
        now = self.now()
        paths.punch_until = now + PUNCH_SECONDS
        paths._tick()

    async def _add_relay(self, paths: PeerPaths, relay: RelayAddress) -> None:
        link = self.node.relay_link(relay)
        try:
            await link.wait_ready(RELAY_SESSION_WAIT)
        except TimeoutError:
            logger.info("no session on %s's relay %s: %s", paths.peer.short(), relay, link.last_error)
            return
        if not paths.conn.is_closed:
            book, now = self.node.reputation, self.node.wall_clock()
            path = paths.add_relay(
                link.path_to(paths.peer),
                reputation=book.score(Role.RELAY, relay.aura_id, now),
                banned=book.is_banned(Role.RELAY, relay.aura_id, now),
            )
            paths.probe(path, self.now())

    # -- probes on the wire -------------------------------------------------------------------
    def _datagram(self, data: bytes, addr: Address, via: DatagramSender) -> None:
        if len(data) != _PROBE_SIZE:
            return
        kind, tx_id, sender = data[0], data[1:9], data[9:41]
        try:
            peer = AuraID(sender)
        except AuralinkError:
            return
        found = self._keyed(peer, data)
        if found is None:
            return
        paths, key = found
        now = self.now()
        if kind == PROBE:
            via.sendto(_probe(PROBE_ACK, tx_id, self.node.aura_id, key), addr)
            if via.path_name == "direct" and f"direct:{addr}" not in paths.senders:
                path = paths.add_direct(addr)  # the peer's mapping, as we see it: probe it back
                if path is not None:
                    paths.probe(path, now)
        else:
            paths.answered(tx_id, now)

    def _keyed(self, peer: AuraID, probe: bytes) -> tuple[PeerPaths, bytes] | None:
        """The paths whose key authenticates ``probe``: those in use first, then the peer's paused
        ones (for a moment, the peer may be managing another of our connections)."""
        managed = self.peers.get(peer)
        for paths in sorted(self._all.get(peer, {}).values(), key=lambda p: p is not managed):
            key = paths.key
            if key is not None and hmac.compare_digest(_probe(probe[0], probe[1:9], peer, key), probe):
                return paths, key
        return None

    def why(self, peer: AuraID) -> dict[str, Any] | None:
        """What :meth:`PeerPaths.why` says for ``peer``, if connected."""
        paths = self.peers.get(peer)
        return None if paths is None else paths.why()
