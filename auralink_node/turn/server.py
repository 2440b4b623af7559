"""The TURN service of a relay node: the asyncio adapter of :class:`~auralink_node.turn.core.TurnServer`,
and the ``auralink/turn/1`` stream handler that hands out credentials.

Theory of operation
-------------------
:class:`TurnService` is a pump. It owns plain non-blocking UDP sockets registered with the event
loop's ``add_reader``: one on the TURN port and one per allocation on an ephemeral port of the
relay's address. Each reader callback drains up to :data:`READ_BATCH` datagrams into the core
with ``now = loop.time()``, then re-arms the one ``loop.call_at`` timer at the core's
:meth:`~auralink_node.turn.core.TurnServer.get_timer`. The core answers through this class's
:class:`~auralink_node.turn.core.TurnIO` methods, which send with ``sendto`` and never wait: a
full socket buffer drops the datagram, as a router would. Sockets are bound synchronously, so
the core gets its relayed port inside the Allocate it is answering.

Where the relayed ports live: on the TURN socket's host, or, when that is ``0.0.0.0``/``::``,
on ``public_host`` (by default the first non-loopback interface address), because
XOR-RELAYED-ADDRESS must be an address peers can send to. A relay behind a 1:1 NAT (a cloud
VM's public IP) must be given its public address; that is not detected.

Credentials: :meth:`TurnService.serve` runs one ``auralink/turn/1`` stream. The stream's peer is
proven by the mesh connection; the relay's :class:`~auralink_node.relay.RelayPolicy` (open,
allow-list, token) and its bans decide, exactly as for relay sessions, and the answer is
:class:`~auralink.calls.turn.Credentials` for that AuraID, valid for
:attr:`~TurnService.credential_ttl` seconds (:mod:`auralink_node.turn.credentials`). The secret
is random per process (:func:`new_secret`): nothing persists,
and a restart revokes everything along with the allocations that died with the process.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from auralink.calls.turn import CODEC, TURN_PROTOCOL, CredentialRequest, Credentials, Refusal
from auralink.identity import AuraID
from auralink.wire import Address
from auralink_node.protocols.framing import MessageReader
from auralink_node.relay.server import RelayPolicy
from auralink_node.reputation import Role
from auralink_node.transport.interfaces import expand_unspecified
from auralink_node.transport.streams import ErrorCode, MeshStream
from auralink_node.turn.core import Addr, TurnConfig, TurnServer
from auralink_node.turn.credentials import make_username, password_for

if TYPE_CHECKING:
    from auralink_node.node import Node

__all__ = [
    "DEFAULT_TURN_PORT",
    "READ_BATCH",
    "SECRET_SIZE",
    "TURN_PROTOCOL",
    "TurnService",
    "new_secret",
    "start_turn_service",
]

logger = logging.getLogger(__name__)

DEFAULT_TURN_PORT = 3478
"""The standard STUN/TURN port (RFC 8489)."""
READ_BATCH = 64
"""Most datagrams one reader callback takes from a socket before yielding to the loop."""
REQUEST_TIMEOUT = 5.0
"""Seconds an ``auralink/turn/1`` stream has to send its request."""
_RECEIVE_BUFFER = 1 << 20
SECRET_SIZE = 32
"""Bytes of a relay's TURN secret."""


def new_secret() -> bytes:
    """A fresh random TURN secret (one per relay process)."""
    return secrets.token_bytes(SECRET_SIZE)


class TurnService:
    """A TURN server on UDP, and the ``auralink/turn/1`` handler that issues its credentials."""

    def __init__(
        self,
        config: TurnConfig,
        policy: RelayPolicy,
        listen: Address,
        *,
        public_host: str | None = None,
        credential_ttl: int = 3600,
        secret: bytes | None = None,
        wall_clock: Callable[[], float] = time.time,
        banned: Callable[[AuraID], bool] | None = None,
    ) -> None:
        """Serve TURN on ``listen`` (port 0: ephemeral); nothing is bound until :meth:`start`."""
        self.config = config
        self.policy = policy
        self.credential_ttl = credential_ttl
        """Seconds the credentials it issues stay good for new allocations."""
        self._listen = listen
        self._public_host = public_host
        self._secret = secret if secret is not None else new_secret()
        self._wall_clock = wall_clock
        self._banned = banned
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._relayed: dict[Addr, socket.socket] = {}
        self._core: TurnServer | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._address: Address | None = None
        self._forbidden: set[Addr] = set()
        self.issued = 0
        """Credentials handed out."""
        self.refused = 0
        """Credential requests refused (policy or ban)."""
        self.send_errors = 0
        """Datagrams the kernel would not take (full buffers, unreachable)."""

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, *, forbidden_peers: tuple[Address, ...] = ()) -> None:
        """Bind the TURN port; ``forbidden_peers`` (the node's own ports) never receive relayed data."""
        loop = asyncio.get_running_loop()
        host = self._listen.host
        family = socket.AF_INET6 if self._listen.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
            sock.bind((host, self._listen.port))
        except OSError:
            sock.close()
            raise
        port = sock.getsockname()[1]
        public = host
        if ipaddress.ip_address(host).is_unspecified:
            public = self._public_host or _first_public(Address(host, port))
        self._loop, self._sock = loop, sock
        self._address = Address(public, port)
        forbidden = {(public, port), *((a.host, a.port) for a in forbidden_peers)}
        for peer in forbidden_peers:
            forbidden.update((a.host, a.port) for a in expand_unspecified(peer))
        self._forbidden = forbidden
        self._core = TurnServer(
            self.config,
            self._secret,
            self,
            epoch=self._wall_clock() - loop.time(),
            banned=self._banned,
            forbidden_peers=frozenset(forbidden),
        )
        loop.add_reader(sock.fileno(), self._read_clients)
        logger.info("TURN server on %s (relayed ports on %s)", self.url, public)

    async def run(self) -> None:
        """Serve until cancelled, then close every socket."""
        try:
            await asyncio.Event().wait()
        finally:
            self.close()

    def close(self) -> None:
        """Drop every allocation and close every socket."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._core is not None:
            self._core.close()
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    # -- inspection ------------------------------------------------------------------------
    @property
    def core(self) -> TurnServer:
        """The sans-I/O server (its ``stats`` and allocations)."""
        assert self._core is not None, "TURN service not started"
        return self._core

    @property
    def address(self) -> Address:
        """The TURN server's address as clients reach it (port 0 resolved)."""
        assert self._address is not None, "TURN service not started"
        return self._address

    @property
    def url(self) -> str:
        """``turn:HOST:PORT?transport=udp``."""
        host = self.address.host
        shown = f"[{host}]" if ":" in host else host
        return f"turn:{shown}:{self.address.port}?transport=udp"

    def stats(self) -> dict[str, int]:
        """Counters for status and metrics: allocations now, bytes and packets relayed, refusals."""
        core = dict(self.core.stats)
        core.update(
            allocations=self.core.allocation_count,
            credentials_issued=self.issued,
            credentials_refused=self.refused,
            send_errors=self.send_errors,
        )
        return core

    # -- credentials -------------------------------------------------------------------------
    def credentials_for(self, peer: AuraID) -> Credentials:
        """Fresh credentials for ``peer``, good for :attr:`credential_ttl` seconds."""
        expires_at = int(self._wall_clock()) + self.credential_ttl
        username = make_username(peer, expires_at)
        return Credentials((self.url,), username, password_for(self._secret, username), expires_at)

    async def serve(self, stream: MeshStream) -> None:
        """Answer one ``auralink/turn/1`` request (the stream handler)."""
        peer = stream.peer
        assert peer is not None, "streams are dispatched only after authentication"
        reader = MessageReader(stream, CODEC)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                request = await reader.expect(CredentialRequest)
        except TimeoutError:
            stream.reset(ErrorCode.CANCELLED)
            return
        refusal = self.policy.admits(peer, request.token)
        if refusal is None and self._banned is not None and self._banned(peer):
            refusal = "banned by this relay's reputation book"
        if refusal is not None:
            self.refused += 1
            logger.info("TURN credentials for %s refused: %s", peer.short(), refusal)
            stream.write(CODEC.encode(Refusal(refusal)))
        else:
            self.issued += 1
            stream.write(CODEC.encode(self.credentials_for(peer)))
        await stream.aclose()

    # -- TurnIO (called by the core) --------------------------------------------------------
    def send(self, data: bytes, addr: Addr) -> None:
        """Send from the TURN port."""
        assert self._sock is not None
        try:
            self._sock.sendto(data, addr)
        except OSError:
            self.send_errors += 1

    def relay(self, relayed: Addr, data: bytes, peer: Addr) -> None:
        """Send from a relayed port."""
        sock = self._relayed.get(relayed)
        if sock is None:
            return
        try:
            sock.sendto(data, peer)
        except OSError:
            self.send_errors += 1

    def open_relay(self) -> Addr | None:
        """Bind an ephemeral port on the relay address for a new allocation."""
        assert self._loop is not None and self._address is not None
        family = socket.AF_INET6 if self._address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
            sock.bind((self._address.host, 0))
        except OSError as exc:
            logger.warning("TURN: cannot bind a relayed port on %s: %s", self._address.host, exc)
            sock.close()
            return None
        relayed: Addr = sock.getsockname()[:2]
        self._relayed[relayed] = sock
        self._loop.add_reader(sock.fileno(), self._read_peers, sock, relayed)
        return relayed

    def close_relay(self, relayed: Addr) -> None:
        """Release a relayed port."""
        sock = self._relayed.pop(relayed, None)
        if sock is not None and self._loop is not None:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    # -- the pump --------------------------------------------------------------------------
    def _read_clients(self) -> None:
        sock, core, loop = self._sock, self._core, self._loop
        if sock is None or core is None or loop is None:
            return
        now = loop.time()
        for _ in range(READ_BATCH):
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # an ICMP error reported on the socket: nothing to read
                continue
            core.datagram_received(data, addr[:2], now)
        self._arm_timer()

    def _read_peers(self, sock: socket.socket, relayed: Addr) -> None:
        core, loop = self._core, self._loop
        if core is None or loop is None:
            return
        now = loop.time()
        for _ in range(READ_BATCH):
            if sock.fileno() < 0:  # the allocation was deleted while we read
                break
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            core.peer_datagram_received(relayed, data, addr[:2], now)
        self._arm_timer()

    def _arm_timer(self) -> None:
        assert self._core is not None and self._loop is not None
        deadline = self._core.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer) if deadline is not None else None

    def _on_timer(self) -> None:
        assert self._core is not None and self._loop is not None
        self._timer = None
        self._timer_at = None
        self._core.handle_timer(self._loop.time())
        self._arm_timer()


def _first_public(bound: Address) -> str:
    """The first non-loopback address of the interfaces behind an unspecified ``bound``."""
    concrete = [a.host for a in expand_unspecified(bound)]
    for host in concrete:
        if not ipaddress.ip_address(host).is_loopback:
            return host
    return concrete[0] if concrete else ("::1" if bound.version == 6 else "127.0.0.1")


async def start_turn_service(node: Node, policy: RelayPolicy) -> TurnService | None:
    """Start the TURN service of relay ``node`` under ``policy``; None if its port cannot be bound.

    It listens on the host of the node's first IPv4 listen address (else its first), on
    ``config.turn_port``; each allocation may move ``config.relay_rate`` bytes per second. A TURN
    port already in use is logged and leaves the relay without TURN (status ``turn: null``)
    rather than failing the node: the mesh relay still works.
    """
    bound = node.listen_addresses
    first = next((a for a in bound if a.version == 4), bound[0])
    service = TurnService(
        TurnConfig(bytes_per_second=node.config.relay_rate),
        policy,
        Address(first.host, node.config.turn_port),
        wall_clock=node.wall_clock,
        banned=lambda peer: node.reputation.is_banned(Role.PEER, peer, node.wall_clock()),
    )
    try:
        await service.start(forbidden_peers=tuple(bound))
    except OSError as exc:
        logger.warning("TURN disabled: cannot listen on %s:%d: %s", first.host, node.config.turn_port, exc.strerror)
        return None
    node.router.register(TURN_PROTOCOL, service.serve)
    node.metrics.registry.register(_TurnCollector(service))
    node.spawn_background(service.run())
    return service


class _TurnCollector(Collector):
    """The TURN server's numbers in the node's Prometheus registry, read at scrape time."""

    def __init__(self, service: TurnService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        stats = self._service.stats()
        yield GaugeMetricFamily("auralink_turn_allocations", "TURN allocations held now.", value=stats["allocations"])
        created = CounterMetricFamily("auralink_turn_allocations_created", "TURN allocations made.")
        created.add_metric([], stats.get("allocations_created", 0))
        yield created
        relayed = CounterMetricFamily(
            "auralink_turn_bytes", "Payload bytes our TURN server relayed, by direction.", labels=["direction"]
        )
        relayed.add_metric(["to_peers"], stats.get("bytes_to_peers", 0))
        relayed.add_metric(["to_clients"], stats.get("bytes_to_clients", 0))
        yield relayed
        credentials = CounterMetricFamily(
            "auralink_turn_credentials", "auralink/turn/1 credential requests, by outcome.", labels=["result"]
        )
        credentials.add_metric(["issued"], stats["credentials_issued"])
        credentials.add_metric(["refused"], stats["credentials_refused"])
        yield credentials
        dropped = CounterMetricFamily(
            "auralink_turn_dropped", "Datagrams our TURN server dropped, by reason.", labels=["reason"]
        )
        for reason in ("quota", "no_permission", "forbidden", "malformed", "unknown"):
            dropped.add_metric([reason], stats.get(f"dropped_{reason}", 0))
        yield dropped
