"""Discovery: the DHT on the node's own socket, mDNS on the LAN, and resolution that races them.

Theory of operation
-------------------
:class:`Discovery` belongs to a :class:`~auralink_node.node.Node`. It runs the node's
:class:`~auralink_node.dht.DHTServer` over the node's QUIC sockets: DHT datagrams start with
0x00 or 0x01, which no QUIC packet does (RFC 9000 sets the fixed bit 0x40), so the endpoint hands
them over (:meth:`~auralink_node.transport.Endpoint.on_raw_datagram`). One port then serves the
mesh and the DHT, the address a peer learns for us in either is the same, and so is the NAT
mapping. The DHT node ID is the DHT key of our own node record (the hash of our public key).

The maintenance loop (:meth:`Discovery.run`, a task of the node) joins through the configured
bootstrap nodes and the contacts saved in ``node.db``, publishes our node record and handle
claim, and then every :attr:`DiscoveryConfig.refresh_interval` seconds refreshes lonely buckets,
republishes, saves contacts, and re-joins if the routing table emptied. The node re-signs its
record (seq + 1) whenever its addresses change or half its lifetime has passed, and calls
:meth:`Discovery.publish_soon`. Peers we authenticated over QUIC become DHT contacts, since their
IDs and addresses are then proven.

Resolution (:meth:`Discovery.resolve`) of an ``@handle`` or AuraID:

1. **cache**: a valid record held in the node's :class:`~auralink.identity.RecordBook` that was
   learned less than :attr:`DiscoveryConfig.cache_ttl` seconds ago, or comes from a live
   connection;
2. otherwise **dht** and **mdns** race, and the first *valid* record wins. An mDNS TXT record is
   only a hint: the node dials the address it names, expecting the AuraID it names, and takes the
   signed records the peer sends over identify;
3. a target that resolves nowhere is remembered as missing for
   :attr:`DiscoveryConfig.negative_ttl` seconds (negative caching), so a typo does not cost a
   DHT lookup per retry.

Handles are pinned to the first key they resolve to (trust on first use, as SSH does with host
keys); ``docs/handles.md`` explains the choice. A later resolution to another key is reported
loudly (a ``WARNING`` log and :attr:`Resolution.warning`) unless a key rotation signed by the
pinned key moved the handle, in which case the pin follows the rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kademlia.node import Node as KademliaNode

from auralink.errors import AuralinkError, IdentityError, ResolveFailed
from auralink.identity import AuraID, HandleClaim, KeyRotation, NodeRecord, parse_handle
from auralink.identity.records import MAX_ROTATION_CHAIN, Record, handle_dht_key, rotation_dht_key
from auralink.mesh.resolution import Resolution, ResolveSource
from auralink.wire import Address
from auralink_node.dht import DHTConfig, DHTServer, PublishFailed
from auralink_node.dht.server import ClosestNodesCrawl
from auralink_node.reputation import Role
from auralink_node.transport.connection import DatagramSender

if TYPE_CHECKING:
    from auralink_node.mdns import MdnsDiscovery, MdnsPeer
    from auralink_node.node import Node

__all__ = ["Discovery", "DiscoveryConfig", "NegativeCache", "Resolution", "ResolveSource", "parse_target"]

SUSPECT_SCORE = 0.3
"""Peers scoring below this (a stranger scores 0.5) are asked last in DHT lookups."""

logger = logging.getLogger(__name__)

DHT_FIRST_BYTES = (0x00, 0x01)
"""First bytes of DHT datagrams (request, response) on the node's sockets."""


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """Timings of discovery."""

    refresh_interval: float = 60.0
    """Seconds between maintenance rounds (bucket refresh, republish, contact save)."""
    cache_ttl: float = 300.0
    """Seconds a record learned from the DHT or mDNS answers resolutions without asking again."""
    negative_ttl: float = 30.0
    """Seconds a failed resolution is remembered."""
    lookup_timeout: float = 5.0
    """Seconds one resolution may take before it fails."""
    saved_contacts: int = 64
    """Saved contacts tried when joining at start."""
    dht: DHTConfig = field(default_factory=DHTConfig)
    """The DHT's own tunables."""


def parse_target(target: AuraID | str) -> AuraID | str:
    """An :class:`AuraID`, or a canonical ``@handle``; raises the :class:`IdentityError` family."""
    if isinstance(target, AuraID):
        return target
    text = str(target).strip()
    if text.startswith("@") or text.endswith(".aura"):
        return parse_handle(text)
    return AuraID.parse(text)


class NegativeCache:
    """Targets that recently failed to resolve, each forgotten ``ttl`` seconds after it failed."""

    def __init__(self, ttl: float, *, max_entries: int = 4096) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._failed: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def fail(self, target: str, now: float, reason: str) -> None:
        """Remember that ``target`` failed at ``now`` because of ``reason``."""
        self._failed.pop(target, None)
        self._failed[target] = (now + self._ttl, reason)
        while len(self._failed) > self._max:
            self._failed.popitem(last=False)

    def check(self, target: str, now: float) -> tuple[float, str] | None:
        """``(seconds left, reason)`` if ``target`` is still remembered as missing, else None."""
        entry = self._failed.get(target)
        if entry is None:
            return None
        until, reason = entry
        if now >= until:
            del self._failed[target]
            return None
        return until - now, reason

    def clear(self, target: str | None = None) -> None:
        """Forget ``target`` (or everything), e.g. once it has been seen."""
        if target is None:
            self._failed.clear()
        else:
            self._failed.pop(target, None)

    def __len__(self) -> int:
        return len(self._failed)


class _EndpointLink(asyncio.DatagramTransport):
    """The DHT's view of the node's sockets: ``sendto`` goes out through the QUIC endpoint."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self._node = node
        self._closing = False

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if self._closing or addr is None:
            return
        self._node.endpoint.send_raw(bytes(data), Address(str(addr[0]), int(addr[1])))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._node.listen_addresses[0].as_tuple()
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True


def _peer_of(record: Record) -> AuraID:
    """Whose record it is (for a rotation: the key it hands over to)."""
    return record.new if isinstance(record, KeyRotation) else record.aura_id


class Discovery:
    """The node's DHT, mDNS and resolver; created and driven by :class:`~auralink_node.node.Node`."""

    def __init__(self, node: Node, config: DiscoveryConfig | None = None) -> None:
        self._node = node
        self.config = config or DiscoveryConfig()
        self.dht = DHTServer(node.aura_id.dht_key(), clock=node.wall_clock, config=self.config.dht)
        self.mdns: MdnsDiscovery | None = None
        self.negative = NegativeCache(self.config.negative_ttl)
        self._fetched: dict[bytes, float] = {}
        self._publish = asyncio.Event()
        self._lookups: dict[str, asyncio.Future[Resolution]] = {}
        self.last_publish: dict[str, Any] = {"at": None, "seq": None, "accepted": None, "error": None}
        self.last_refresh: float | None = None
        self.joined: list[str] = []
        self._verified_ids: dict[bytes, AuraID] = {}
        self._verified_addresses: dict[tuple[str, int], AuraID] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Attach the DHT to the node's sockets and start mDNS (if configured)."""
        self.dht.attach(_EndpointLink(self._node))
        assert self.dht.protocol is not None
        self.dht.protocol.admit = self._admit
        self.dht.protocol.suspect = self._suspect
        self.dht.on_misbehaviour = self._misbehaved
        self._node.endpoint.on_raw_datagram(DHT_FIRST_BYTES, self._dht_datagram)
        if self._node.config.mdns:
            await self._start_mdns()

    async def _start_mdns(self) -> None:
        interfaces = self._node.config.mdns_interface_addresses(self._node.listen_addresses)
        if not interfaces:
            # Deliberate: zeroconf does work on 127.0.0.1, but then every node on this host would
            # hear every other one (Linux delivers port-5353 multicast to every group member).
            logger.info("mDNS is off: the node listens on loopback only (set mdns_interfaces to use it)")
            return
        from auralink_node.mdns import MdnsDiscovery  # noqa: PLC0415 - zeroconf loads only when mDNS is on

        ipv4 = [a for a in self._node.advertised_addresses() if a.version == 4]
        bound = self._node.listen_addresses
        port = next((a.port for a in bound if a.version == 4), bound[0].port)
        self.mdns = MdnsDiscovery(
            self._node.aura_id,
            port=port,
            addresses=ipv4 or self._node.advertised_addresses(),
            interfaces=interfaces,
            handle=self._node.config.handle,
            on_peer=self._mdns_peer,
        )
        await self.mdns.start()

    async def stop(self) -> None:
        """Save contacts, stop mDNS and the DHT."""
        with contextlib.suppress(AuralinkError):
            self.save_contacts()
        for future in self._lookups.values():
            future.cancel()
        if self.mdns is not None:
            await self.mdns.stop()
        self.dht.stop()

    def _dht_datagram(self, data: bytes, addr: Address, via: DatagramSender) -> None:
        if via.path_name == "direct":  # the DHT speaks only on direct paths (contacts are addresses)
            self.dht.datagram_received(data, addr.as_tuple())

    # -- maintenance ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Join, publish, then keep the table fresh and our records published (a node service)."""
        await self.join(self._node.config.bootstrap, save=False)
        while True:
            await self._publish_now()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
            # arrives as the event is set (gh-86296), which would keep a stopping node waiting.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.refresh_interval):
                    await self._publish.wait()
            if not self._publish.is_set():
                await self._maintain()

    async def _maintain(self) -> None:
        self._node.check_addresses()
        if self.contact_count() == 0:
            await self.join(self._node.config.bootstrap, save=False)
        await self.dht.refresh()
        self.last_refresh = self._node.wall_clock()
        self.save_contacts()
        self._node.save_reputation()

    def publish_soon(self) -> None:
        """Publish our records at the next chance (after they were re-signed)."""
        self._publish.set()

    async def _publish_now(self) -> None:
        self._publish.clear()
        records: list[Record] = [*self._node.rotations, self._node.record]  # rotations first: they move the handle
        if self._node.claim is not None:
            records.append(self._node.claim)
        entry: dict[str, Any] = {"at": self._node.wall_clock(), "seq": self._node.record.seq, "error": None}
        if self.contact_count() == 0:
            entry.update(accepted=0, error="no DHT contacts yet: join a node with `auralink-node join HOST:PORT`")
            self.last_publish = entry
            return
        accepted = []
        for record in records:
            try:
                accepted.append(await self.dht.put(record))
            except PublishFailed as exc:
                accepted.append(0)
                entry["error"] = str(exc)
                if isinstance(record, HandleClaim):
                    entry["error"] = f"no DHT node accepted our claim to {record.handle}: another key may hold it"
                    logger.warning("%s", entry["error"])
        entry["accepted"] = min(accepted)
        self.last_publish = entry

    async def join(self, addresses: Sequence[str | Address], *, save: bool = True) -> list[str]:
        """Join the DHT through ``addresses``; returns those that answered (see :attr:`joined`).

        The nodes that answer seed a lookup of our own ID, which fills the routing table
        (Kademlia paper, section 2.3). ``save`` keeps the contacts in ``node.db``; without it (at
        start, and when the table emptied) the saved contacts are tried too.
        """
        targets: list[tuple[str, int]] = []
        for item in addresses:
            address = item if isinstance(item, Address) else Address.parse(item)
            targets.append(address.as_tuple())
        if not save:
            for _node_id, host, port in self._node.store.contacts(self.config.saved_contacts):
                if (host, port) not in targets:
                    targets.append((host, port))
        ours = {a.as_tuple() for a in self._node.listen_addresses}
        targets = [t for t in targets if t not in ours]
        found = [n for n in await asyncio.gather(*(self.dht.bootstrap_node(t) for t in targets)) if n is not None]
        answered = [str(Address(n.ip, n.port)) for n in found]
        if found and self.dht.protocol is not None:
            crawl = ClosestNodesCrawl(self.dht.protocol, self.dht.node, found, self.dht.ksize, self.dht.alpha)
            await crawl.find()
            self.joined = list(dict.fromkeys([*self.joined, *answered]))
        if save:
            self.save_contacts()
        if self.contact_count():
            await self._publish_now()  # so that once join returns, our records are out there
        return answered

    def contacts(self) -> list[KademliaNode]:
        """Every contact in the routing table."""
        protocol = self.dht.protocol
        if protocol is None:
            return []
        return [node for bucket in protocol.router.buckets for node in bucket.get_nodes()]

    def contact_count(self) -> int:
        """How many contacts the routing table holds."""
        return len(self.contacts())

    def save_contacts(self) -> None:
        """Keep the routing table's contacts in ``node.db`` for the next start."""
        contacts = [(bytes(n.id), str(n.ip), int(n.port)) for n in self.contacts()]
        if contacts:
            self._node.store.save_contacts(contacts, self._node.wall_clock())

    def _admit(self, contact: KademliaNode) -> bool:
        """Keep peers our reputation book bans out of the routing table (when we know who they are)."""
        peer = self._verified_ids.get(contact.id)
        return peer is None or not self._node.reputation.is_banned(Role.PEER, peer, self._node.wall_clock())

    def _suspect(self, node_id: bytes) -> bool:
        """A DHT contact whose owner's reputation as a peer is below :data:`SUSPECT_SCORE` (strangers are not)."""
        peer = self._verified_ids.get(node_id)
        return (
            peer is not None and self._node.reputation.score(Role.PEER, peer, self._node.wall_clock()) < SUSPECT_SCORE
        )

    def _misbehaved(self, address: tuple[str, int], reason: str) -> None:
        """A DHT peer sent garbage or an invalid record: a strike, if we know whose address it is."""
        peer = self._verified_addresses.get(address)
        if peer is None or reason == "rate-limited" or "StaleRecord" in reason or "HandleTaken" in reason:
            return  # stale replicas and handle races happen to honest nodes; rate limits are ours
        self._node.reputation.invalid_record(Role.PEER, peer, self._node.wall_clock(), reason=f"dht: {reason}")

    def peer_verified(self, peer: AuraID, address: Address) -> None:
        """A QUIC handshake proved ``peer`` holds its key at ``address``: make it a DHT contact."""
        self._verified_ids[peer.dht_key()] = peer
        self._verified_addresses[address.as_tuple()] = peer
        if len(self._verified_addresses) > 4096:
            self._verified_addresses.clear()
            self._verified_ids.clear()
        protocol = self.dht.protocol
        if protocol is not None and not self.dht.transport.is_closing():
            protocol.welcome_if_new(KademliaNode(peer.dht_key(), address.host, address.port))

    # -- mDNS -------------------------------------------------------------------------------------
    def _mdns_peer(self, peer: MdnsPeer) -> None:
        if peer.aura_id == self._node.aura_id or self._node.endpoint.connection_to(peer.aura_id) is not None:
            return
        self._node.spawn_background(self._dial_hint(peer.aura_id, peer.addresses))

    async def _dial_hint(self, peer: AuraID, addresses: Sequence[Address]) -> bool:
        """Dial an mDNS hint; identify then brings the peer's signed records. True on success."""
        for address in addresses:
            self._node.store.address_seen(peer, address, "mdns", self._node.wall_clock())
        try:
            await self._node.dial(peer, addresses)
        except AuralinkError as exc:
            logger.info("mDNS hint %s at %s did not answer as itself: %s", peer, list(map(str, addresses)), exc)
            return False
        return True

    async def _mdns_claim(self, handle: str) -> HandleClaim | None:
        if not await self._dial_mdns(lambda p: p.handle == handle, handle=handle):
            return None
        return self._node.book.claim(handle, self._node.wall_clock())

    async def _mdns_record(self, peer: AuraID) -> NodeRecord | None:
        if not await self._dial_mdns(lambda p: p.aura_id == peer, aura_id=peer):
            return None
        return self._node.book.node(peer, self._node.wall_clock())

    async def _dial_mdns(
        self, wanted: Callable[[MdnsPeer], bool], *, aura_id: AuraID | None = None, handle: str | None = None
    ) -> bool:
        """Dial the mDNS hint for ``aura_id`` or ``handle`` (or the next ``wanted`` accepts); True if it answered."""
        if self.mdns is None:
            return False
        hint = self.mdns.find(aura_id=aura_id, handle=handle) or await self.mdns.wait_for(
            wanted, self.config.lookup_timeout
        )
        return hint is not None and await self._dial_hint(hint.aura_id, hint.addresses)

    # -- DHT lookups ------------------------------------------------------------------------------
    async def _dht_claim(self, handle: str) -> HandleClaim | None:
        found = await self.dht.get_record(handle_dht_key(handle))
        if not isinstance(found, HandleClaim):
            return None
        held = self._node.book.claim(handle, self._node.wall_clock())
        if held is not None and held.aura_id != found.aura_id:  # moved by a rotation we have not seen yet?
            await self._fetch_rotations(held.aura_id)
        return found if self._keep(found) else None

    async def _dht_record(self, peer: AuraID) -> NodeRecord | None:
        found = await self.dht.get_record(peer.dht_key())
        return found if isinstance(found, NodeRecord) and self._keep(found) else None

    def _keep(self, record: Record) -> bool:
        """Put a verified record into the book; False if the book refuses it (e.g. a taken handle)."""
        now = self._node.wall_clock()
        try:
            self._node.book.put(record, now)
        except IdentityError as exc:
            if isinstance(record, NodeRecord) and self._node.book.node(record.aura_id, now) is not None:
                return True  # we already hold this record or a newer one
            logger.info("record from the DHT for %s not kept: %s", _peer_of(record), exc)
            return False
        self._fetched[record.dht_key()] = now
        store = self._node.store
        if isinstance(record, HandleClaim):
            store.peer_seen(record.aura_id, now, handle=record.handle)
        elif isinstance(record, NodeRecord):
            store.peer_seen(record.aura_id, now, record=record.encode())
            for address in record.addresses:
                store.address_seen(record.aura_id, address, "record", now)
        return True

    # -- resolution -------------------------------------------------------------------------------
    async def resolve(self, target: AuraID | str) -> Resolution:
        """Resolve an ``@handle`` or AuraID to its current key and addresses (see the module doc).

        Raises :class:`~auralink.errors.ResolveFailed` when no source knows the target, and the
        :class:`~auralink.errors.IdentityError` family for a target that is not an AuraID or handle.
        """
        parsed = parse_target(target)
        key = str(parsed)
        now = self._node.wall_clock()
        missing = self.negative.check(key, now)
        if missing is not None:
            left, reason = missing
            raise ResolveFailed(f"{reason} (remembered; asking again in {left:.0f} s)", key)
        pending = self._lookups.get(key)
        if pending is None:  # concurrent resolutions of one target share one lookup
            pending = asyncio.ensure_future(self._resolve(parsed))
            self._lookups[key] = pending
            pending.add_done_callback(lambda _: self._lookups.pop(key, None))
        try:
            return await asyncio.wait_for(asyncio.shield(pending), self.config.lookup_timeout)
        except TimeoutError:
            pending.cancel()
            reason = f"cannot resolve {key}: no answer within {self.config.lookup_timeout:g} s"
            self.negative.fail(key, self._node.wall_clock(), reason)
            raise ResolveFailed(reason, key) from None

    async def _resolve(self, parsed: AuraID | str) -> Resolution:
        key = str(parsed)
        try:
            if isinstance(parsed, AuraID):
                return await self._resolve_key(parsed, handle=None)
            return await self._resolve_handle(parsed)
        except ResolveFailed as exc:
            self.negative.fail(key, self._node.wall_clock(), str(exc))
            raise

    async def _resolve_handle(self, handle: str) -> Resolution:
        now = self._node.wall_clock()
        claim = self._node.book.claim(handle, now)
        source: ResolveSource = "cache"
        if claim is None or not self._fresh(claim):
            found = await _first(
                {"dht": self._dht_claim(handle), "mdns": self._mdns_claim(handle)},
            )
            if found is not None:
                source, claim = found[0], found[1]  # type: ignore[assignment]
            elif claim is None:
                raise ResolveFailed(f"cannot resolve {handle}: no valid claim in the DHT or on the LAN", handle)
        assert isinstance(claim, HandleClaim)
        aura_id = self._node.book.current_key(claim.aura_id, self._node.wall_clock())
        pinned, warning = await self._check_pin(handle, aura_id)
        resolution = await self._resolve_key(aura_id, handle=handle)
        return Resolution(
            aura_id,
            handle,
            resolution.addresses,
            source if source != "cache" else resolution.source,
            resolution.record,
            pinned,
            warning,
        )

    async def _resolve_key(self, aura_id: AuraID, *, handle: str | None) -> Resolution:
        now = self._node.wall_clock()
        record = self._node.book.node(aura_id, now)
        source: ResolveSource = "cache"
        if aura_id == self._node.aura_id:
            record = self._node.record
        elif record is None or not self._fresh(record):
            found = await _first({"dht": self._dht_record(aura_id), "mdns": self._mdns_record(aura_id)})
            if found is not None:
                source, record = found[0], found[1]  # type: ignore[assignment]
        addresses = tuple(self._node.known_addresses(aura_id))
        if record is None and not addresses:
            raise ResolveFailed(f"cannot resolve {aura_id}: no node record in the DHT or on the LAN", str(aura_id))
        if handle is None:
            handle = self._handle_of(aura_id, now)
        self.negative.clear(str(aura_id))
        return Resolution(aura_id, handle, addresses, source, record)

    async def _fetch_rotations(self, old: AuraID) -> None:
        """Fetch the chain of signed rotations away from ``old`` from the DHT into the book."""
        for _ in range(MAX_ROTATION_CHAIN):
            found = await self.dht.get_record(rotation_dht_key(old))
            if not isinstance(found, KeyRotation) or found.old != old or not self._keep(found):
                return
            old = found.new

    def _handle_of(self, aura_id: AuraID, now: float) -> str | None:
        """The handle ``aura_id`` validly claims, as far as the records held here tell."""
        if aura_id == self._node.aura_id:
            return self._node.config.handle
        row = self._node.store.peer(aura_id)
        if row is None or row.handle is None:
            return None
        claim = self._node.book.claim(row.handle, now)
        if claim is None or self._node.book.current_key(claim.aura_id, now) != aura_id:
            return None
        return row.handle

    def _fresh(self, record: Record) -> bool:
        """Whether a held record may answer without asking the network again."""
        peer = _peer_of(record)
        if peer == self._node.aura_id or self._node.endpoint.connection_to(peer) is not None:
            return True
        fetched = self._fetched.get(record.dht_key())
        return fetched is not None and self._node.wall_clock() - fetched < self.config.cache_ttl

    async def _check_pin(self, handle: str, aura_id: AuraID) -> tuple[AuraID | None, str | None]:
        """Pin ``handle`` on first use; report a different key loudly unless a rotation explains it."""
        now = self._node.wall_clock()
        store = self._node.store
        pin = store.pin(handle)
        if pin is None:
            store.set_pin(handle, aura_id, now)
            return None, None
        pinned = AuraID.parse(pin[0])
        if pinned == aura_id:
            store.set_pin(handle, aura_id, now)
            return None, None
        if self._node.book.current_key(pinned, now) != aura_id:
            await self._fetch_rotations(pinned)
        if self._node.book.current_key(pinned, now) == aura_id:
            logger.info("%s moved from %s to %s by a signed key rotation; pin updated", handle, pinned, aura_id)
            store.set_pin(handle, aura_id, now)
            return None, None
        since = time.strftime("%Y-%m-%d", time.gmtime(pin[1]))
        warning = (
            f"{handle} now resolves to {aura_id}, but it was pinned to {pinned} on {since} and no key rotation "
            f"links them. Someone else may hold the handle now. If you trust the new key, run "
            f"`auralink-node pins forget {handle}`."
        )
        logger.warning("HANDLE KEY CHANGED: %s", warning)
        return pinned, warning

    # -- status -----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What ``auralink-node dht status`` prints."""
        protocol = self.dht.protocol
        buckets = protocol.router.buckets if protocol is not None else []
        return {
            "node_id": self._node.aura_id.dht_key().hex(),
            "contacts": self.contact_count(),
            "buckets": sum(1 for b in buckets if len(b)),
            "stored_records": len(self.dht.storage),
            "bootstrap": list(self._node.config.bootstrap),
            "joined": list(self.joined),
            "last_publish": dict(self.last_publish),
            "last_refresh": self.last_refresh,
            "misbehaving_peers": len(self.dht.misbehaviour),
            "rejections": dict(self.dht.reasons),
            "negative_cache": len(self.negative),
            "mdns": {
                "enabled": self.mdns is not None,
                "peers": len(self.mdns.peers()) if self.mdns is not None else 0,
            },
        }


async def _first(sources: dict[str, Awaitable[Record | None]]) -> tuple[str, Record] | None:
    """Run every source at once; the first to return a record wins and the rest are cancelled."""
    tasks = {asyncio.ensure_future(coro): name for name, coro in sources.items()}
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.cancelled():
                    continue
                error = task.exception()
                if error is not None:
                    if not isinstance(error, AuralinkError):
                        raise error
                    logger.info("%s lookup failed: %s", tasks[task], error)
                    continue
                result = task.result()
                if result is not None:
                    return tasks[task], result
        return None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
