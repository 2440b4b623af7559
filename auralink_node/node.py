"""The node: one identity, one QUIC endpoint, the built-in protocols, the store and the APIs.

Theory of operation
-------------------
:class:`Node` is an async context manager. Its constructor opens nothing; ``async with`` loads
the key, opens ``node.db``, binds the UDP sockets and starts every service under one
:class:`asyncio.TaskGroup`: the control API on ``<home>/node.sock`` (when enabled), the metrics
endpoint (when configured), and the task that re-signs our node record at half its lifetime.
Leaving the block closes every connection and stops every task; nothing outlives the node.

Each authenticated connection runs identify once (the dialler asks, the acceptor answers): the
peer's signed record and the address it observed for us go into the store and the record book.
Applications use :meth:`connect`, :meth:`open_stream`, :meth:`ping` and :meth:`serve`, the same
operations the control API offers to the CLI and to SDK apps.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from auralink import __version__
from auralink.errors import (
    AuralinkError,
    ConfigError,
    ConnectionError_,
    IdentityError,
    KeystoreError,
    RemoteProtocolError,
)
from auralink.identity import AuraID, HandleClaim, Identity, KeyRotation, NodeRecord, RecordBook, RelayAddress
from auralink.identity.records import MAX_RELAYS
from auralink.wire import Address
from auralink_node.api.metrics_server import MetricsServer
from auralink_node.api.server import ControlServer
from auralink_node.config import NodeConfig
from auralink_node.discovery import Discovery, DiscoveryConfig, Resolution, parse_target
from auralink_node.home import NodeHome
from auralink_node.metrics import NodeMetrics
from auralink_node.paths import PATHS_PROTOCOL, PathManager
from auralink_node.protocols import identify, ping
from auralink_node.relay import RELAY_PROTOCOL, RelayLink, RelayPolicy, RelayService
from auralink_node.relay.protocol import DELIVER_DATAGRAM, SEND_DATAGRAM
from auralink_node.reputation import ReputationBook, Role
from auralink_node.store import NodeStore
from auralink_node.transport import Endpoint, MeshStream, PeerConnection, ProtocolRouter, StreamHandler
from auralink_node.transport.connection import DatagramSender
from auralink_node.transport.endpoint import TransportConfig
from auralink_node.transport.interfaces import expand_unspecified
from auralink_node.transport.streams import ErrorCode
from auralink_node.turn.server import TurnService, start_turn_service

__all__ = ["Node", "PingReport"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PingReport:
    """The outcome of :meth:`Node.ping`."""

    target: AuraID
    """Who was pinged."""
    address: Address
    """The address the connection uses."""
    sent: int
    """Pings sent."""
    rtts: tuple[float, ...]
    """Round-trip times of the pings answered, in seconds."""

    @property
    def received(self) -> int:
        """Pongs received."""
        return len(self.rtts)

    def percentile_ms(self, q: float) -> float | None:
        """The ``q``-th percentile RTT in milliseconds (nearest rank), or None if nothing came back."""
        if not self.rtts:
            return None
        ordered = sorted(self.rtts)
        rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
        return ordered[rank] * 1000

    def as_dict(self) -> dict[str, Any]:
        """The report as the CLI and API print it."""
        ms = [r * 1000 for r in self.rtts]
        return {
            "target": str(self.target),
            "address": str(self.address),
            "sent": self.sent,
            "received": self.received,
            "rtt_ms": {
                "p50": self.percentile_ms(50),
                "p99": self.percentile_ms(99),
                "min": min(ms) if ms else None,
                "max": max(ms) if ms else None,
                "mean": statistics.fmean(ms) if ms else None,
            },
        }


class _MetricsObserver:
    """Feeds the endpoint's reports into the node's Prometheus registry."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self._metrics = metrics

    def connection_opened(self, direction: str) -> None:
        self._metrics.connection_opened("outbound" if direction == "outbound" else "inbound")

    def connection_failed(self, direction: str, reason: str) -> None:
        self._metrics.connection_failed("outbound" if direction == "outbound" else "inbound")
        mapped = {"identity_mismatch": "identity_mismatch", "timeout": "timeout"}.get(reason, "other")
        self._metrics.handshake_failed(mapped)  # type: ignore[arg-type]

    def connection_closed(self) -> None:
        self._metrics.connection_closed()

    def bytes_transferred(self, direction: str, nbytes: int) -> None:
        if direction == "sent":
            self._metrics.bytes_sent(nbytes)
        else:
            self._metrics.bytes_received(nbytes)

    def datagram_dropped(self, reason: str) -> None:
        self._metrics.datagram_dropped(reason)  # type: ignore[arg-type]

    def stream_opened(self, protocol: str) -> None:
        self._metrics.stream_opened(protocol)

    def stream_refused(self, protocol: str) -> None:
        self._metrics.stream_refused()

    def protocol_violation(self) -> None:
        self._metrics.protocol_violation()


RELAY_WAIT = 3.0
"""Seconds a dial waits for a session on a peer's relay to open."""


async def _ready_within(link: RelayLink, timeout: float) -> None:
    try:
        await link.wait_ready(timeout)
    except TimeoutError:
        logger.info("relay %s not ready within %.1f s: %s", link.relay, timeout, link.last_error or "no answer")


class Node:
    """An AuraLink node. Use ``async with Node(home, config) as node:``."""

    def __init__(
        self,
        home: NodeHome,
        config: NodeConfig,
        *,
        passphrase: bytes | None = None,
        control_api: bool = True,
        transport: TransportConfig | None = None,
        discovery: DiscoveryConfig | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.home = home
        self.config = config
        self._passphrase = passphrase
        self._control_api = control_api
        self._transport_config = transport
        self._discovery_config = discovery
        self._discovery: Discovery | None = None
        self._wall_clock = wall_clock
        self.router = ProtocolRouter()
        self.book = RecordBook()
        self.observed: Counter[Address] = Counter()
        """How many peers reported seeing us at each address (identify)."""
        self._identity: Identity | None = None
        self._endpoint: Endpoint | None = None
        self._store: NodeStore | None = None
        self._metrics: NodeMetrics | None = None
        self._record: NodeRecord | None = None
        self._claim: HandleClaim | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._started_at = 0.0
        self.metrics_address: Address | None = None
        """Where ``/metrics`` and ``/health`` are served (port 0 resolved), if enabled."""
        self._identified: dict[PeerConnection, asyncio.Future[identify.PeerInfo]] = {}
        self.relay_service: RelayService | None = None
        """Our relay, when ``config.relay`` is on."""
        self.turn_service: TurnService | None = None
        """Our TURN server, when ``config.relay`` and ``config.turn`` are on (and its port was free)."""
        self.relay_links: dict[AuraID, RelayLink] = {}
        """Our sessions on relays: the home relays from the config, and relays of peers we dialled."""
        self._home_relays: set[AuraID] = set()
        self.rotations: tuple[KeyRotation, ...] = ()
        self.reputation = ReputationBook()
        """Scores and bans of peers and relays (kept in ``node.db``)."""
        """The signed rotations that led to our current key, oldest first (published with our records)."""
        self.router.register(ping.PING_PROTOCOL, ping.serve_ping)
        self.router.register(identify.IDENTIFY_PROTOCOL, self._serve_identify)

    # -- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> Node:
        keystore = self.home.keystore()
        if not keystore.exists():
            raise KeystoreError(f"no identity in {self.home.root}; create one with `auralink-node init`")
        self._identity = keystore.load(self._passphrase)
        self.rotations = keystore.rotations()
        self._started_at = self._wall_clock()
        self._store = NodeStore.open(self.home.root / "node.db")
        self.reputation = ReputationBook(entries=self._store.load_reputation())
        self._metrics = NodeMetrics(self._identity.aura_id, __version__)
        try:
            self._endpoint = Endpoint(
                self._identity,
                self.config.listen_addresses(),
                config=self._transport_config,
                router=self.router,
                observer=_MetricsObserver(self._metrics),
                wall_clock=self._wall_clock,
            )
            await self._endpoint.__aenter__()
        except OSError as exc:
            self._store.close()
            raise ConfigError(f"cannot listen on {', '.join(self.config.listen)}: {exc.strerror}", "listen") from exc
        self._endpoint.on_connection_ready(self._connection_ready)
        self._endpoint.on_connection_closed(self._connection_closed)
        self.paths = PathManager(self)
        self.router.register(PATHS_PROTOCOL, self.paths.serve)
        self._endpoint.on_raw_datagram((DELIVER_DATAGRAM,), self._relay_datagram)
        for rotation in self.rotations:  # so that our own book follows our key's history
            self.book.put(rotation, self._wall_clock())
        self._resign()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._spawn(self._refresh_record())
        try:
            self._discovery = Discovery(self, self._discovery_config)
            await self._discovery.start()
            self._spawn(self._discovery.run())
            await self._start_services()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        logger.info("node %s listening on %s", self.aura_id, ", ".join(map(str, self.listen_addresses)))
        return self

    async def _start_services(self) -> None:
        assert self._tasks is not None
        if self.config.relay:
            policy = RelayPolicy(
                access=self.config.relay_access,
                allow=frozenset(AuraID.parse(a) for a in self.config.relay_allow),
                token=(self.config.relay_token or "").encode(),
                bytes_per_second=self.config.relay_rate,
                max_peers=self.config.relay_max_peers,
            )
            self.relay_service = RelayService(
                policy,
                clock=time.monotonic,
                banned=lambda peer: self.reputation.is_banned(Role.PEER, peer, self._wall_clock()),
                send_raw=self.endpoint.send_raw,
            )
            self.metrics.watch_relay(self.relay_service.stats)
            self.router.register(RELAY_PROTOCOL, self.relay_service.serve)
            self.endpoint.on_raw_datagram((SEND_DATAGRAM,), self.relay_service.datagram_received)
            if self.config.turn:
                self.turn_service = await start_turn_service(self, policy)
        for relay in self.config.relay_addresses():
            if relay.aura_id != self.aura_id:
                self.relay_link(relay, home=True)
        if self._control_api:
            server = ControlServer(self, self.home.root / "node.sock")
            await server.start()
            self._spawn(server.serve_until(self._stopping))
        if self.config.metrics:
            metrics = MetricsServer(self, Address.parse(self.config.metrics))
            await metrics.start()
            self.metrics_address = metrics.bound
            self._spawn(metrics.serve_until(self._stopping))

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping.set()
        tasks, self._tasks = self._tasks, None
        try:
            if self._discovery is not None:
                await self._discovery.stop()
            if self._endpoint is not None:
                await self._endpoint.__aexit__(None, None, None)
            if tasks is not None:
                for task in list(self._background):
                    task.cancel()
                await tasks.__aexit__(None, None, None)
        finally:
            for waiter in self._identified.values():
                waiter.cancel()
            if self._store is not None:
                self.save_reputation()
                self._store.close()
            logger.info("node stopped")

    def _spawn(self, coro: Any) -> None:
        """Run ``coro`` as a service of this node; it is cancelled when the node stops."""
        assert self._tasks is not None, "node not started"
        task = self._tasks.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def spawn_background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task of the node (cancelled when it stops); dropped if it is stopping."""
        if self._tasks is None:
            coro.close()
            return
        self._spawn(self._guarded(coro))

    async def _guarded(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except AuralinkError as exc:  # a background job's failure must not stop the node
            logger.info("background task failed: %s", exc)

    def stop(self) -> None:
        """Ask a node that is running :meth:`run_until_stopped` to stop."""
        self._stopping.set()

    async def run_until_stopped(self) -> None:
        """Serve until :meth:`stop` is called (the CLI calls it on SIGINT and SIGTERM)."""
        await self._stopping.wait()

    # -- identity and addresses -----------------------------------------------------------
    @property
    def identity(self) -> Identity:
        """This node's key."""
        assert self._identity is not None, "node not started"
        return self._identity

    @property
    def aura_id(self) -> AuraID:
        """This node's AuraID."""
        return self.identity.aura_id

    @property
    def endpoint(self) -> Endpoint:
        """The QUIC endpoint."""
        assert self._endpoint is not None, "node not started"
        return self._endpoint

    @property
    def discovery(self) -> Discovery:
        """The DHT, mDNS and the resolver."""
        assert self._discovery is not None, "node not started"
        return self._discovery

    @property
    def wall_clock(self) -> Callable[[], float]:
        """The clock records are signed and checked with (Unix seconds)."""
        return self._wall_clock

    @property
    def claim(self) -> HandleClaim | None:
        """Our current signed handle claim, if we have a handle."""
        return self._claim

    @property
    def store(self) -> NodeStore:
        """The node database."""
        assert self._store is not None, "node not started"
        return self._store

    @property
    def metrics(self) -> NodeMetrics:
        """The node's Prometheus registry."""
        assert self._metrics is not None, "node not started"
        return self._metrics

    @property
    def listen_addresses(self) -> list[Address]:
        """The UDP addresses actually bound."""
        return self.endpoint.local_addresses

    def advertised_addresses(self) -> list[Address]:
        """The concrete addresses we publish: bound ones, with ``0.0.0.0``/``::`` expanded."""
        out: list[Address] = []
        for bound in self.listen_addresses:
            out.extend(a for a in expand_unspecified(bound) if a not in out)
        return out[:16]

    @property
    def record(self) -> NodeRecord:
        """Our current signed node record."""
        assert self._record is not None, "node not started"
        return self._record

    # -- relays -------------------------------------------------------------------------------
    def relay_link(self, relay: RelayAddress, *, home: bool = False) -> RelayLink:
        """Our session on ``relay``, started if there is none yet."""
        link = self.relay_links.get(relay.aura_id)
        if link is None:
            token = (self.config.relays_token or "").encode()
            link = RelayLink(
                self.endpoint, relay, token=token, on_change=self._relays_changed, on_outcome=self._relay_outcome
            )
            self.relay_links[relay.aura_id] = link
            self._spawn(link.run())
        if home:
            self._home_relays.add(relay.aura_id)
        return link

    def _relay_datagram(self, data: bytes, addr: Address, via: DatagramSender) -> None:
        for link in self.relay_links.values():  # a handful at most
            if link.relay.address == addr:
                link.datagram_received(data)
                return

    def home_relays(self) -> list[RelayAddress]:
        """The home relays to list in our record: open sessions, not banned, best first.

        Best is the lowest RTT to the relay divided by its reputation score (a stranger scores
        0.5, so a relay with a record of failures must be much faster to be preferred).
        """
        now = self._wall_clock()
        ready = [
            self.relay_links[r]
            for r in self._home_relays
            if self.relay_links[r].is_ready and not self.reputation.is_banned(Role.RELAY, r, now)
        ]

        def cost(link: RelayLink) -> float:
            conn = self.endpoint.connection_to(link.relay.aura_id)
            rtt = conn.rtt if conn is not None and conn.rtt is not None else 1.0
            return rtt / max(self.reputation.score(Role.RELAY, link.relay.aura_id, now), 0.01)

        return [link.relay for link in sorted(ready, key=cost)][:MAX_RELAYS]

    def _relay_outcome(self, relay: RelayAddress, ok: bool) -> None:
        now = self._wall_clock()
        if ok:
            self.reputation.success(Role.RELAY, relay.aura_id, now)
        else:
            self.reputation.failure(Role.RELAY, relay.aura_id, now)
        self._relays_changed()

    def save_reputation(self) -> None:
        """Write reputation changes to ``node.db`` (done every maintenance round and at shutdown)."""
        changed, removed = self.reputation.take_changes()
        if changed or removed:
            self.store.save_reputation(changed, removed)

    def _relays_changed(self) -> None:
        if self._record is not None and tuple(self.home_relays()) != self._record.relays:
            self._resign()

    async def _relay_paths(self, peer: AuraID, record: NodeRecord | None) -> list[DatagramSender]:
        """Senders to ``peer`` through the relays its record lists (sessions opened as needed)."""
        if record is None:
            return []
        links = [self.relay_link(r) for r in record.relays if r.aura_id not in (self.aura_id, peer)]
        await asyncio.gather(*(_ready_within(link, RELAY_WAIT) for link in links))
        return [link.path_to(peer) for link in links if link.is_ready]

    def _resign(self) -> None:
        """Sign our records afresh with seq + 1 (the first ever starts at the clock in milliseconds)."""
        now = self._wall_clock()
        self._record = NodeRecord.create(
            self.identity,
            seq=self.store.next_record_seq(first=int(now * 1000)),
            issued_at=int(now),
            expires_at=int(now) + self.config.record_ttl,
            addresses=self.advertised_addresses(),
            relays=self.home_relays(),
            protocols=self.router.protocols,
        )
        self.book.put(self._record, now)
        if self.config.handle is not None:
            self._claim = HandleClaim.create(
                self.identity,
                self.config.handle,
                seq=self._record.seq,
                issued_at=int(now),
                expires_at=int(now) + self.config.claim_ttl,
            )
            try:
                self.book.put(self._claim, now)
            except AuralinkError as exc:  # another key holds our handle in our own cache: say so
                logger.warning("our handle %s is not ours here: %s", self.config.handle, exc)
        if self._discovery is not None:
            self._discovery.publish_soon()

    def check_addresses(self) -> bool:
        """Re-sign and republish our record if our addresses changed; True if they had."""
        if self.advertised_addresses() == list(self.record.addresses):
            return False
        logger.info("our addresses changed to %s; publishing a new record", list(map(str, self.advertised_addresses())))
        self._resign()
        return True

    async def _refresh_record(self) -> None:
        while True:
            await asyncio.sleep(self.config.record_ttl / 2)
            self._resign()

    def uptime(self) -> float:
        """Seconds since the node started."""
        return self._wall_clock() - self._started_at

    # -- connections --------------------------------------------------------------------------
    def _connection_ready(self, conn: PeerConnection) -> None:
        assert conn.peer is not None
        now = self._wall_clock()
        if self.reputation.is_banned(Role.PEER, conn.peer, now):
            standing = self.reputation.standing(Role.PEER, conn.peer, now)
            logger.info("refusing banned peer %s: %s", conn.peer.short(), standing.ban_reason)
            conn.abort(ErrorCode.REFUSED, "banned")
            return
        self.store.peer_seen(conn.peer, now)
        self.store.peer_connected(conn.peer, now)
        if not conn.is_relayed:  # a relayed connection's address is virtual
            self.store.address_seen(
                conn.peer, conn.remote, "dialed" if conn.is_client else "observed", now, success=True
            )
        if self._discovery is not None and not conn.is_relayed:
            self._discovery.peer_verified(conn.peer, conn.remote)
        self.paths.connection_ready(conn)
        waiter = asyncio.get_running_loop().create_future()
        self._identified[conn] = waiter
        if conn.is_client and self._tasks is not None:
            self._spawn(self._identify(conn, waiter))

    def _connection_closed(self, conn: PeerConnection) -> None:
        self.paths.connection_closed(conn)
        waiter = self._identified.pop(conn, None)
        if waiter is not None and not waiter.done():
            waiter.cancel()

    async def _identify(self, conn: PeerConnection, waiter: asyncio.Future[identify.PeerInfo]) -> None:
        try:
            stream = await conn.open_stream(identify.IDENTIFY_PROTOCOL)
            info = await identify.exchange(stream, self.record, self._claim, self._wall_clock(), initiator=True)
        except AuralinkError as exc:  # the peer misbehaved or went away: end its connection, not the node
            if isinstance(exc, RemoteProtocolError | IdentityError):
                assert conn.peer is not None
                self.reputation.invalid_record(Role.PEER, conn.peer, self._wall_clock(), reason=f"identify: {exc}")
                self.endpoint.protocol_violation(conn, f"identify: {exc}")
            logger.info("identify with %s failed: %s", conn, exc)
            if not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()
            return
        self._learn(conn, info, waiter)

    async def _serve_identify(self, stream: MeshStream) -> None:
        info = await identify.exchange(stream, self.record, self._claim, self._wall_clock(), initiator=False)
        assert stream.peer is not None
        self._learn(stream.connection, info, self._identified.get(stream.connection))

    def _learn(
        self, conn: PeerConnection, info: identify.PeerInfo, waiter: asyncio.Future[identify.PeerInfo] | None
    ) -> None:
        now = self._wall_clock()
        try:
            self.book.put(info.record, now)
        except AuralinkError as exc:  # stale or equal records are fine; the peer's is verified already
            logger.debug("record from %s not stored: %s", conn, exc)
        handle = None
        if info.claim is not None:
            try:
                self.book.put(info.claim, now)
                handle = info.claim.handle
            except AuralinkError as exc:  # e.g. HandleTaken: first come, first served (docs/concepts)
                logger.warning("%s claims %s, not accepted: %s", conn, info.claim.handle, exc)
        self.store.peer_seen(info.record.aura_id, now, handle=handle, record=info.record.encode())
        for address in info.record.addresses:
            self.store.address_seen(info.record.aura_id, address, "record", now)
        self.observed[info.observed] += 1
        if self._discovery is not None:
            self._discovery.negative.clear(str(info.record.aura_id))
            if handle is not None:
                self._discovery.negative.clear(handle)
        if waiter is not None and not waiter.done():
            waiter.set_result(info)

    async def resolve(self, target: AuraID | str) -> Resolution:
        """The current key and addresses of an AuraID or ``@handle``: cache, then DHT and mDNS raced.

        Raises :class:`~auralink.errors.ResolveFailed` when nobody knows it (see
        :mod:`auralink_node.discovery`).
        """
        return await self.discovery.resolve(target)

    async def peer_of(self, target: AuraID | str) -> AuraID:
        """The AuraID ``target`` names: itself if it is one, else the key its handle resolves to."""
        parsed = parse_target(target)
        return parsed if isinstance(parsed, AuraID) else (await self.resolve(parsed)).aura_id

    async def connect(self, peer: AuraID, addresses: Sequence[Address] = ()) -> PeerConnection:
        """An authenticated connection to ``peer``, via ``addresses`` or the addresses we know for it."""
        existing = self.endpoint.connection_to(peer)
        if existing is not None:
            return existing
        known = list(addresses) or self.known_addresses(peer)
        record = self.book.node(peer, self._wall_clock())
        if not known and record is None:
            resolution = await self.resolve(peer)
            known, record = list(resolution.addresses), resolution.record
        relays = await self._relay_paths(peer, record)
        try:
            conn = await self.endpoint.connect(peer, known, relays)
        except ConnectionError_:
            if self.store.peer(peer) is not None:  # count failures of peers we know; strangers get no row
                self.store.peer_failed(peer, self._wall_clock())
                self.reputation.failure(Role.PEER, peer, self._wall_clock())
            raise
        self.reputation.success(Role.PEER, peer, self._wall_clock())
        return conn

    async def dial(self, peer: AuraID, addresses: Sequence[Address] = (), *, timeout: float = 5.0) -> PeerConnection:
        """:meth:`connect`, then wait (at most ``timeout``) until identify has exchanged records.

        Afterwards the peer's record and handle are known here. An identify that fails or times
        out does not fail the dial: the connection is authenticated either way.
        """
        conn = await self.connect(peer, addresses)
        waiter = self._identified.get(conn)
        if waiter is not None:
            # asyncio.wait neither raises the waiter's outcome nor swallows our own cancellation.
            await asyncio.wait([waiter], timeout=timeout)
        return conn

    def known_addresses(self, peer: AuraID) -> list[Address]:
        """Addresses we have for ``peer``: its record first, then what the store remembers."""
        record = self.book.node(peer, self._wall_clock())
        out = list(record.addresses) if record else []
        for row in self.store.addresses(peer):
            address = Address.parse(row.address)
            if address not in out:
                out.append(address)
        return out

    async def open_stream(self, peer: AuraID, protocol: str, addresses: Sequence[Address] = ()) -> MeshStream:
        """Open a ``protocol`` stream to ``peer``, connecting first if needed."""
        conn = await self.connect(peer, addresses)
        return await conn.open_stream(protocol)

    def serve(self, protocol: str, handler: StreamHandler) -> None:
        """Serve incoming ``protocol`` streams with ``handler``; the record lists the protocol from now on."""
        self.router.register(protocol, handler)
        self._resign()

    def unserve(self, protocol: str) -> None:
        """Stop serving ``protocol``."""
        self.router.unregister(protocol)
        self._resign()

    async def ping(self, peer: AuraID, addresses: Sequence[Address] = (), *, count: int = 1) -> PingReport:
        """Ping ``peer`` ``count`` times over the ping protocol; RTTs go to the store and metrics."""
        conn = await self.connect(peer, addresses)
        now = self._wall_clock
        results = await ping.ping(conn, count, on_reply=lambda _, rtt: self.metrics.rtt_measured(rtt))
        rtts = tuple(r for r in results if r is not None)
        if rtts:
            self.store.record_rtt(peer, conn.path, statistics.median(rtts) * 1000, now())
        return PingReport(peer, conn.remote, count, rtts)

    # -- status -------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What ``auralink-node status`` prints."""
        return {
            "aura_id": str(self.aura_id),
            "handle": self.config.handle,
            "listen": [str(a) for a in self.listen_addresses],
            "addresses": [str(a) for a in self.advertised_addresses()],
            "observed": [str(a) for a, _ in self.observed.most_common(4)],
            "peers": len({c.peer for c in self.endpoint.connections() if c.peer is not None}),
            "protocols": self.router.protocols,
            "version": __version__,
            "uptime_s": round(self.uptime(), 3),
            "record_seq": self.record.seq,
            "relays": [
                {
                    "relay": str(link.relay),
                    "home": aura_id in self._home_relays,
                    "ready": link.is_ready,
                    "score": round(self.reputation.score(Role.RELAY, aura_id, self._wall_clock()), 4),
                }
                for aura_id, link in self.relay_links.items()
            ],
            "relay_service": dict(self.relay_service.stats) if self.relay_service is not None else None,
            "turn": self.turn_service.url if self.turn_service is not None else None,
        }

    def peers(self) -> list[dict[str, Any]]:
        """What ``auralink-node peers`` prints: every peer the store knows, live ones first."""
        live = {c.peer: c for c in self.endpoint.connections() if c.peer is not None and c.is_ready}
        rows: list[dict[str, Any]] = []
        for row in self.store.peers():
            aura_id = AuraID.parse(row.aura_id)
            conn = live.get(aura_id)
            paths = self.store.path_stats(row.aura_id)
            rows.append(
                {
                    "aura_id": row.aura_id,
                    "handle": row.handle,
                    "connected": conn is not None,
                    "address": str(conn.remote) if conn else None,
                    "rtt_ms": round(conn.rtt * 1000, 3) if conn and conn.rtt is not None else None,
                    "path": conn.path if conn else None,
                    "reputation": self.reputation.standing(Role.PEER, aura_id, self._wall_clock()).to_dict(),
                    "addresses": [a.address for a in self.store.addresses(row.aura_id)],
                    "paths": [{"path": p.path, "rtt_ms": p.rtt_ewma_ms, "samples": p.samples} for p in paths],
                    "first_seen": row.first_seen,
                    "last_seen": row.last_seen,
                    "connects": row.connects,
                    "failures": row.failures,
                }
            )
        rows.sort(key=lambda r: (not r["connected"], -r["last_seen"]))
        return rows
