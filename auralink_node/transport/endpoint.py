"""The QUIC endpoint: one UDP socket per listen address, serving and dialling authenticated peers.

Theory of operation
-------------------
An :class:`Endpoint` owns the node's UDP sockets and every QUIC connection on them, inbound and
outbound alike. Outbound connections leave from the same socket the node listens on (as in iroh
and libp2p), so the address a peer observes for us is the one it can reach us at, which is what
hole punching needs later.

Incoming datagrams are demultiplexed by destination connection ID, for both roles, into
:class:`~auralink_node.transport.connection.PeerConnection` objects, which pump aioquic. A
datagram with an unknown connection ID is a new connection only if it is a full-size Initial
packet; everything else is dropped and counted. New connections are admission-controlled
before any state is kept, which closes the spoofed-Initial hole measured in FACTS.md:

* at most ``max_connections`` connections in all;
* once one source IP has ``max_handshakes_per_source`` unfinished handshakes, or the endpoint has
  ``retry_threshold``, new clients must echo a stateless Retry token (RFC 9000 section 8.1.2)
  first, proving they receive at their address; spoofed sources never can;
* even with a valid token, one source IP gets at most four times ``max_handshakes_per_source``
  unfinished handshakes (a hard cap for a real host that floods).

Handshakes that do not authenticate within ``handshake_timeout`` are aborted.

Streams are routed by protocol name through a :class:`ProtocolRouter`; their handlers run as
tasks of the endpoint's :class:`asyncio.TaskGroup`, so none outlives the endpoint. A handler
that raises has its stream reset; the error is logged and the endpoint keeps serving.

Connections are reused: :meth:`Endpoint.connect` returns the live authenticated connection to a
peer when there is one. TLS session tickets are kept per peer (client side) and per ticket
(server side, with the key the client proved), so reconnects resume without certificates. A
server keeps a ticket only once the application accepted the connection it was issued on (the
``on_connection_ready`` callbacks ran and left it open), so a ticket never outlives a refusal.

:meth:`Endpoint.open_stream` goes one step further: with no live connection but a ticket that
allows early data, it resumes and returns the stream at once, and what the application writes
travels in 0-RTT packets with the ClientHello. Tickets stay reusable until they expire, so 0-RTT
data can be replayed (RFC 8446 section 8): a server runs a stream that arrives in 0-RTT before
the handshake completes only if its protocol was registered ``replay_safe``, and holds every
other stream until the client's Finished, which a replay cannot produce (see
:mod:`~auralink_node.transport.connection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aioquic.buffer import Buffer as QuicBuffer  # type: ignore[attr-defined]
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.packet import (
    QuicPacketType,
    QuicProtocolVersion,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler
from aioquic.tls import SessionTicket

from auralink.errors import (
    ConnectionError_,
    DialFailed,
    LocalProtocolError,
    PeerIdentityMismatch,
    RemoteProtocolError,
)
from auralink.identity import AuraID, Identity
from auralink.wire import Address
from auralink_node.transport.connection import DatagramSender, PeerConnection
from auralink_node.transport.quic import NodeQuicConnection
from auralink_node.transport.streams import ErrorCode, MeshStream, validate_protocol_name
from auralink_node.transport.tls import CertifiedKey, make_certificate

__all__ = [
    "MESH_ALPN",
    "Endpoint",
    "ProtocolRouter",
    "StreamHandler",
    "TransportConfig",
    "TransportObserver",
    "virtual_address",
]

logger = logging.getLogger(__name__)

MESH_ALPN = "auralink/mesh/1"
"""The ALPN of a mesh connection, which multiplexes stream protocols."""

StreamHandler = Callable[[MeshStream], Awaitable[None]]
"""Serves one incoming stream; the stream is reset if it raises."""

RawHandler = Callable[[bytes, Address, DatagramSender], None]
"""Takes one non-QUIC datagram: its bytes, where it came from, and the way to answer it."""

_MAX_TICKETS = 1024
_RCVBUF = 4 * 1024 * 1024
_ADDRESS_CACHE = 4096
_BATCH = 64
_BACKLOG = 1024
_MAX_DATAGRAM = 65536
_QUIC_FIXED_BIT = 0x40
_QUIC_VERSIONS = [QuicProtocolVersion.VERSION_1]
"""Only QUIC v1: aioquic derives Initial keys for every supported version of each new connection."""


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Limits and timers of the QUIC transport."""

    idle_timeout: float = 30.0
    """Seconds without any packet after which a connection is dropped."""
    keepalive_interval: float = 10.0
    """Seconds of silence after which we send a PING to keep NAT bindings and the connection alive."""
    handshake_timeout: float = 5.0
    """Seconds a handshake may take before it is aborted."""
    stream_window: int = 1 << 20
    """Receive credit per stream, in bytes: how far a peer may run ahead of our reader."""
    connection_window: int = 8 << 20
    """Initial receive credit per connection, in bytes."""
    write_high_water: int = 1 << 20
    """``drain()`` blocks while more than this many written bytes are unacknowledged."""
    write_low_water: int = 256 << 10
    """A blocked ``drain()`` resumes once the backlog falls to this."""
    max_connections: int = 1024
    """Most connections, in all states."""
    max_handshakes_per_source: int = 16
    """Most unfinished handshakes from one source IP."""
    retry_threshold: int = 64
    """Above this many unfinished handshakes, new clients must pass a Retry round trip."""
    connect_timeout: float = 5.0
    """Seconds a dial to one address may take."""
    relay_head_start: float = 0.25
    """Seconds direct addresses get before relay paths join the race (RFC 8305's delay)."""


class TransportObserver(Protocol):
    """What the endpoint reports, for metrics. Every method must be cheap and must not raise."""

    def connection_opened(self, direction: str) -> None: ...
    def connection_failed(self, direction: str, reason: str) -> None: ...
    def connection_closed(self) -> None: ...
    def bytes_transferred(self, direction: str, nbytes: int) -> None: ...
    def datagram_dropped(self, reason: str) -> None: ...
    def stream_opened(self, protocol: str) -> None: ...
    def stream_refused(self, protocol: str) -> None: ...
    def protocol_violation(self) -> None: ...


class _NullObserver:
    def connection_opened(self, direction: str) -> None:
        return None

    def connection_failed(self, direction: str, reason: str) -> None:
        return None

    def connection_closed(self) -> None:
        return None

    def bytes_transferred(self, direction: str, nbytes: int) -> None:
        return None

    def datagram_dropped(self, reason: str) -> None:
        return None

    def stream_opened(self, protocol: str) -> None:
        return None

    def stream_refused(self, protocol: str) -> None:
        return None

    def protocol_violation(self) -> None:
        return None


class ProtocolRouter:
    """Maps stream protocol names (``namespace/name/version``) to their handlers."""

    def __init__(self) -> None:
        self._handlers: dict[str, StreamHandler] = {}
        self._replay_safe: set[str] = set()

    def register(self, protocol: str, handler: StreamHandler, *, replay_safe: bool = False) -> None:
        """Serve ``protocol`` with ``handler``; registering a name twice is an error.

        ``replay_safe=True`` lets a resuming client's 0-RTT stream reach ``handler`` before its
        handshake completes, saving a round trip. Set it only for idempotent protocols (a ping,
        an echo, a read-only lookup): such a stream may be a replay of an earlier one, sent by
        someone who cannot read the answer. ``stream.peer`` is then the key the session ticket
        was issued to.
        """
        validate_protocol_name(protocol)
        if protocol in self._handlers:
            raise LocalProtocolError(f"protocol {protocol!r} already has a handler")
        self._handlers[protocol] = handler
        if replay_safe:
            self._replay_safe.add(protocol)

    def unregister(self, protocol: str) -> None:
        """Stop serving ``protocol``; new streams for it are refused."""
        self._handlers.pop(protocol, None)
        self._replay_safe.discard(protocol)

    def is_replay_safe(self, protocol: str) -> bool:
        """Whether ``protocol`` is served and may be served from 0-RTT data."""
        return protocol in self._replay_safe and protocol in self._handlers

    def handler(self, protocol: str) -> StreamHandler | None:
        """The handler of ``protocol``, if any."""
        return self._handlers.get(protocol)

    @property
    def protocols(self) -> list[str]:
        """Every protocol served, sorted."""
        return sorted(self._handlers)


@functools.lru_cache(maxsize=4096)  # called for every relayed datagram
def virtual_address(peer: AuraID) -> Address:
    """The address aioquic sees for a connection that starts on a relay.

    An IPv6 unique-local address (``fd00::/8``, never routed) made from the peer's key, so each
    peer has its own; packets never go there (iroh maps relayed peers the same way).
    """
    digest = hashlib.blake2b(peer.public_key, digest_size=7, person=b"auralink-vaddr").digest()
    return Address(str(ipaddress.IPv6Address(b"\xfd" + digest + bytes(7) + b"\x01")), 1)


class _Socket:
    """One non-blocking UDP socket, read in batches straight from the event loop's selector.

    asyncio's datagram transport delivers one datagram per selector wake-up, and a QUIC
    connection then builds its answer per datagram. Here each wake-up drains up to
    ``_BATCH`` datagrams, feeds them all, and lets every connection they touched transmit once:
    fewer selector rounds, fewer ACK-building passes. Sends go straight to the socket; when the
    kernel buffer is full they wait in a short queue (then are dropped, as UDP may).
    """

    def __init__(self, endpoint: Endpoint, sock: socket.socket) -> None:
        self._endpoint = endpoint
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._backlog: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._addresses: dict[tuple[str, int], Address] = {}  # parsing an IP per packet is costly
        self._unreported_sent = 0  # bytes sent that the observer hears of at the end of this loop turn
        self.is_open = True
        self._loop.add_reader(sock.fileno(), self._readable)

    def loop_time(self) -> float:
        """The event loop's clock, which every connection's timers use."""
        return self._loop.time()

    @property
    def path_name(self) -> str:
        """Connections on a UDP socket take direct paths."""
        return "direct"

    @property
    def sockname(self) -> Address:
        """The bound address."""
        name = self._sock.getsockname()
        return Address(name[0], name[1])

    def _address(self, raw: Any) -> Address:
        key = (raw[0], raw[1])
        address = self._addresses.get(key)
        if address is None:
            if len(self._addresses) >= _ADDRESS_CACHE:
                self._addresses.clear()
            address = self._addresses[key] = Address(raw[0], raw[1])
        return address

    def _readable(self) -> None:
        endpoint = self._endpoint
        touched: dict[PeerConnection, None] = {}
        received = 0
        endpoint._in_batch = True  # relayed datagrams in this batch are flushed with it, below
        try:
            for _ in range(_BATCH):
                try:
                    data, raw = self._sock.recvfrom(_MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # e.g. an ICMP error queued on the socket
                    logger.debug("socket error: %s", exc)
                    break
                received += len(data)
                try:
                    conn = endpoint._datagram_received(self, data, self._address(raw))
                except Exception:  # the network boundary: one bad packet must never take the endpoint down
                    logger.exception("error processing a datagram from %s; dropped", raw)
                    endpoint._observer.datagram_dropped("error")
                    continue
                if conn is not None:
                    touched[conn] = None
        finally:
            endpoint._in_batch = False
        if received:  # one report per batch: the observer's counters are not free
            endpoint._observer.bytes_transferred("received", received)
        for conn in touched:
            if not conn.is_closed:
                conn.flush()
        if endpoint._relayed_touched:
            endpoint._flush_relayed()

    def sendto(self, data: bytes, addr: Address) -> None:
        """Send one datagram, or queue it while the kernel buffer is full."""
        if not self.is_open:
            return
        if self._backlog:
            self._queue(data, addr.as_tuple())
            return
        try:
            self._sock.sendto(data, addr.as_tuple())
        except (BlockingIOError, InterruptedError):
            self._queue(data, addr.as_tuple())
            self._loop.add_writer(self._sock.fileno(), self._writable)
            return
        except OSError as exc:  # unreachable network and the like: the datagram is lost, as UDP may be
            logger.debug("cannot send to %s: %s", addr, exc)
            return
        self._count_sent(len(data))

    def _count_sent(self, nbytes: int) -> None:
        if not self._unreported_sent:
            self._loop.call_soon(self._report_sent)
        self._unreported_sent += nbytes

    def _report_sent(self) -> None:
        sent, self._unreported_sent = self._unreported_sent, 0
        if sent:
            self._endpoint._observer.bytes_transferred("sent", sent)

    def _queue(self, data: bytes, target: tuple[str, int]) -> None:
        if len(self._backlog) >= _BACKLOG:
            self._endpoint._observer.datagram_dropped("queue_full")
            return
        self._backlog.append((data, target))

    def _writable(self) -> None:
        while self._backlog:
            data, target = self._backlog[0]
            try:
                self._sock.sendto(data, target)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("cannot send to %s: %s", target, exc)
            else:
                self._count_sent(len(data))
            self._backlog.popleft()
        self._loop.remove_writer(self._sock.fileno())

    def close(self) -> None:
        """Stop reading and writing and close the socket (the port is free on return)."""
        if self.is_open:
            self.is_open = False
            self._loop.remove_reader(self._sock.fileno())
            self._loop.remove_writer(self._sock.fileno())
            self._backlog.clear()
            self._sock.close()


def _bind(address: Address) -> socket.socket:
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # v4 has its own socket
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        sock.bind(address.as_tuple())
    except BaseException:
        sock.close()
        raise
    return sock


class Endpoint:
    """A node's QUIC endpoint. Use ``async with``; the constructor opens nothing."""

    def __init__(
        self,
        identity: Identity,
        listen: Sequence[Address],
        *,
        config: TransportConfig | None = None,
        router: ProtocolRouter | None = None,
        observer: TransportObserver | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not listen:
            raise LocalProtocolError("an endpoint needs at least one listen address")
        self.identity = identity
        self.config = config or TransportConfig()
        self.router = router or ProtocolRouter()
        self._observer: TransportObserver = observer or _NullObserver()
        self._listen = tuple(listen)
        self._wall_clock = wall_clock
        self._sockets: list[_Socket] = []
        self._bound: list[Address] = []
        self._cids: dict[bytes, PeerConnection] = {}
        self._connections: set[PeerConnection] = set()
        self._peers: dict[AuraID, PeerConnection] = {}
        self._dialing: dict[AuraID, asyncio.Future[PeerConnection | BaseException]] = {}
        self._resumptions: dict[PeerConnection, asyncio.Future[PeerConnection | BaseException]] = {}
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._handshakes_by_source: dict[str, int] = {}
        self._pending_handshakes: set[PeerConnection] = set()
        self._client_tickets: dict[AuraID, SessionTicket] = {}
        self._server_tickets: OrderedDict[bytes, tuple[SessionTicket, AuraID]] = OrderedDict()
        self._retry = QuicRetryTokenHandler()
        self._tasks: asyncio.TaskGroup | None = None
        self._certified: CertifiedKey | None = None
        self._on_ready: list[Callable[[PeerConnection], None]] = []
        self._on_violation: list[Callable[[PeerConnection, str], None]] = []
        self._on_closed: list[Callable[[PeerConnection], None]] = []
        self._raw_handlers: dict[int, RawHandler] = {}
        self._relayed_touched: dict[PeerConnection, None] = {}
        self._in_batch = False  # a socket is draining a batch (and flushes relayed datagrams' connections)
        self._socket_by_version: dict[int, _Socket] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Endpoint:
        self._loop = asyncio.get_running_loop()
        self._certified = make_certificate(self.identity, self._wall_clock())
        try:
            for address in self._listen:
                sock = _Socket(self, _bind(address))
                self._sockets.append(sock)
                self._bound.append(sock.sockname)
                self._socket_by_version.setdefault(address.version, sock)
        except OSError:
            self._close_sockets()
            raise
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close_all(ErrorCode.SHUTDOWN, "endpoint shutting down")
        assert self._tasks is not None
        tasks, self._tasks = self._tasks, None
        for task in self._handler_tasks:
            task.cancel()
        for dial in self._dialing.values():
            dial.cancel()
        try:
            await tasks.__aexit__(None, None, None)
        finally:
            self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        self._socket_by_version.clear()

    @property
    def local_addresses(self) -> list[Address]:
        """The addresses actually bound (port 0 resolved)."""
        return list(self._bound)

    @property
    def certified_key(self) -> CertifiedKey:
        """This endpoint's TLS key and certificate."""
        assert self._certified is not None, "endpoint not started"
        return self._certified

    def connections(self) -> list[PeerConnection]:
        """Every live connection."""
        return [c for c in self._connections if not c.is_closed]

    def connection_to(self, peer: AuraID) -> PeerConnection | None:
        """The live authenticated connection to ``peer``, if any."""
        conn = self._peers.get(peer)
        return conn if conn is not None and conn.is_ready and not conn.is_closed else None

    def on_connection_ready(self, callback: Callable[[PeerConnection], None]) -> None:
        """Call ``callback`` for every connection once its peer is authenticated."""
        self._on_ready.append(callback)

    def on_connection_closed(self, callback: Callable[[PeerConnection], None]) -> None:
        """Call ``callback`` for every connection when it ends (cleanly or not)."""
        self._on_closed.append(callback)

    def close_all(self, code: int = ErrorCode.SHUTDOWN, reason: str = "closing") -> None:
        """Close every connection."""
        for conn in list(self._connections):
            conn.close(code, reason)

    # -- configuration ------------------------------------------------------------------------
    def _quic_config(self, *, is_client: bool, server_name: str | None = None) -> QuicConfiguration:
        certified = self.certified_key
        return QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[MESH_ALPN],
            certificate=certified.certificate,
            private_key=certified.private_key,
            verify_mode=ssl.CERT_NONE,  # the AuraID check in PeerConnection replaces chain validation
            idle_timeout=self.config.idle_timeout,
            max_stream_data=self.config.stream_window,
            max_data=self.config.connection_window,
            server_name=server_name,
            max_datagram_frame_size=65536,
            supported_versions=list(_QUIC_VERSIONS),
        )

    # -- dialling -----------------------------------------------------------------------------
    async def connect(
        self, peer: AuraID, addresses: Sequence[Address], relays: Sequence[DatagramSender] = ()
    ) -> PeerConnection:
        """An authenticated connection to ``peer``: the existing one, or a new one.

        Direct ``addresses`` are tried in order, each for at most ``connect_timeout``. Paths
        through ``relays`` (senders from :mod:`auralink_node.relay`) start after
        ``relay_head_start`` seconds, or at once if there is no address, and race the direct
        attempts, as in Happy Eyeballs (RFC 8305): the first connection to authenticate wins and
        the others are abandoned. Raises :class:`~auralink.errors.PeerIdentityMismatch` if an
        address answers with another key, else :class:`~auralink.errors.DialFailed` listing why
        each path failed.
        """
        existing = self.connection_to(peer)
        if existing is not None:
            return existing
        if peer == self.identity.aura_id:
            raise LocalProtocolError("a node cannot dial itself")
        pending = self._dialing.get(peer)
        if pending is None or pending.done():  # a finished dial whose clean-up has not run yet is not reused
            if self._tasks is None:
                raise LocalProtocolError("the endpoint is not running; use `async with`")
            pending = self._tasks.create_task(self._dial_outcome(peer, tuple(addresses), tuple(relays)))
            self._dialing[peer] = pending
            pending.add_done_callback(functools.partial(self._dial_over, peer))
        outcome = await asyncio.shield(pending)
        if isinstance(outcome, BaseException):
            raise outcome.with_traceback(None)
        return outcome

    def _dial_over(self, peer: AuraID, dial: asyncio.Future[PeerConnection | BaseException]) -> None:
        if self._dialing.get(peer) is dial:
            del self._dialing[peer]

    async def _dial_outcome(
        self, peer: AuraID, addresses: tuple[Address, ...], relays: tuple[DatagramSender, ...]
    ) -> PeerConnection | BaseException:
        # A dial is shared by every caller that asks for the same peer meanwhile, and owned by the
        # endpoint's task group, which must never see it fail: the outcome is returned instead.
        try:
            return await self._dial(peer, addresses, relays)
        except Exception as exc:  # handed to every waiting caller and raised there, never lost
            return exc

    async def _dial(
        self, peer: AuraID, addresses: tuple[Address, ...], relays: tuple[DatagramSender, ...]
    ) -> PeerConnection:
        if not addresses and not relays:
            raise DialFailed(f"no known address or relay for {peer.short()}; pass one or resolve the peer first")
        reasons: list[str] = []
        attempts = []
        if addresses:
            attempts.append(self._dial_direct(peer, addresses, reasons))
        for sender in relays:
            delay = self.config.relay_head_start if addresses else 0.0
            attempts.append(self._dial_path(peer, virtual_address(peer), sender, reasons, delay=delay))
        tasks = [asyncio.ensure_future(attempt) for attempt in attempts]
        winner: PeerConnection | None = None
        try:
            for finished in asyncio.as_completed(tasks):
                try:
                    winner = await finished
                    return winner
                except PeerIdentityMismatch:
                    self._observer.connection_failed("outbound", "identity_mismatch")
                    raise
                except (ConnectionError_, TimeoutError):
                    continue  # the reason is in ``reasons``
        finally:
            for task in tasks:
                task.cancel()
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                # Two paths can authenticate in the same instant: keep one connection per peer,
                # or the two ends may each manage (and probe) a different one.
                if isinstance(outcome, PeerConnection) and outcome is not winner:
                    outcome.close(reason="another path won")
        raise DialFailed(f"could not connect to {peer.short()}: " + "; ".join(reasons), tuple(reasons))

    async def _dial_direct(self, peer: AuraID, addresses: tuple[Address, ...], reasons: list[str]) -> PeerConnection:
        for address in addresses:
            try:
                sock = self._socket_for(address)
            except DialFailed as exc:
                reasons.append(f"{address}: {exc}")
                continue
            try:
                return await self._dial_path(peer, address, sock, reasons)
            except PeerIdentityMismatch:
                raise
            except (ConnectionError_, TimeoutError):
                continue
        raise DialFailed("no direct address answered")

    async def _dial_path(
        self, peer: AuraID, address: Address, sender: DatagramSender, reasons: list[str], *, delay: float = 0.0
    ) -> PeerConnection:
        """One handshake with ``peer`` at ``address`` through ``sender``; its failure goes to ``reasons``."""
        if delay:
            await asyncio.sleep(delay)  # the Happy Eyeballs head start of the direct path
        where = str(address) if sender.path_name == "direct" else sender.path_name
        try:
            return await self._handshake(peer, address, sender)
        except PeerIdentityMismatch:
            raise
        except (ConnectionError_, TimeoutError) as exc:
            reasons.append(f"{where}: {exc or f'no answer within {self.config.connect_timeout:.1f} s'}")
            self._observer.connection_failed("outbound", "timeout" if isinstance(exc, TimeoutError) else "error")
            raise

    async def _handshake(self, peer: AuraID, address: Address, sender: DatagramSender) -> PeerConnection:
        conn = self._start_client(peer, address, sender)
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                await conn.wait_ready()
        except DialFailed:
            if not conn.resuming:
                raise
            # The server refused our session ticket (it restarted, say): forget it, full handshake.
            self._client_tickets.pop(peer, None)
            return await self._handshake(peer, address, sender)
        except TimeoutError:
            if not conn.is_closed:
                conn.abort(ErrorCode.HANDSHAKE_TIMEOUT, "dial timed out")
            raise
        except asyncio.CancelledError:  # another path won the race
            if conn.is_ready:  # authenticated in the same instant as the winner
                conn.close(reason="another path won")
            elif not conn.is_closed:
                conn.abort(ErrorCode.HANDSHAKE_TIMEOUT, "another path won")
            raise
        return conn

    async def open_stream(self, peer: AuraID, addresses: Sequence[Address], protocol: str) -> MeshStream:
        """A new stream to ``peer`` speaking ``protocol``, in 0-RTT when a resumed session allows it.

        With a live connection to ``peer`` this is ``(await connect(...)).open_stream(protocol)``.
        Without one, but with a session ticket from ``peer`` that allows early data and a direct
        address, it resumes the session at ``addresses[0]`` and returns the stream before the
        handshake ends: the header and what is written next go with the ClientHello, and the
        peer's answer can come back within one round trip if it serves ``protocol`` as
        ``replay_safe``. Calls to :meth:`connect` meanwhile share that handshake. Nothing the peer
        sends is read before its key is checked. If the resumed handshake fails, the stream fails
        with the reason and the ticket is dropped, so the next call makes a full handshake.
        """
        conn = self.connection_to(peer)
        pending = self._dialing.get(peer)
        dialing = pending is not None and not pending.done()  # a finished dial waits for its done callback
        if conn is None and not dialing and addresses and self._tasks is not None:
            ticket = self._client_tickets.get(peer)
            sock = self._socket_by_version.get(addresses[0].version)
            if ticket is not None and ticket.max_early_data_size and ticket.is_valid and sock is not None:
                conn = self._start_client(peer, addresses[0], sock)
                outcome: asyncio.Future[PeerConnection | BaseException] = self._loop.create_future()
                self._dialing[peer] = self._resumptions[conn] = outcome  # connect() shares it, as a dial
                conn.when_handshake_over(functools.partial(self._resumption_over, peer, conn))
                return conn.start_stream(protocol)
        if conn is None:
            conn = await self.connect(peer, addresses)
        return await conn.open_stream(protocol)

    def _resumption_over(self, peer: AuraID, conn: PeerConnection, error: BaseException | None = None) -> None:
        """An :meth:`open_stream` handshake ended: hand its outcome to callers of :meth:`connect`.

        Called at once from :meth:`connection_ready` on success (so a caller never gets a
        connection the application has closed since), else when the handshake fails or times
        out (``handshake_timeout``).
        """
        outcome = self._resumptions.pop(conn, None)
        if outcome is None:
            return
        if self._dialing.get(peer) is outcome:
            del self._dialing[peer]
        if outcome.done():  # cancelled: the endpoint is shutting down
            return
        if conn.is_ready:
            outcome.set_result(conn)
            return
        self._client_tickets.pop(peer, None)  # the next dial makes a full handshake
        self._observer.connection_failed("outbound", "error")
        outcome.set_result(error or DialFailed(f"resumed handshake with {peer.short()} failed"))

    def _socket_for(self, address: Address) -> _Socket:
        sock = self._socket_by_version.get(address.version)
        if sock is not None:
            return sock
        raise DialFailed(
            f"no IPv{address.version} socket to dial {address} from; listen on an IPv{address.version} address"
        )

    def _start_client(self, peer: AuraID, address: Address, sender: DatagramSender) -> PeerConnection:
        config = self._quic_config(is_client=True, server_name=str(peer))
        config.session_ticket = self._client_tickets.get(peer)
        quic = NodeQuicConnection(
            configuration=config,
            stream_window=self.config.stream_window,
            session_ticket_handler=lambda ticket: self._client_tickets.__setitem__(peer, ticket),
        )
        loop = asyncio.get_running_loop()
        conn = PeerConnection(self, quic, sender, address, expected=peer, now=loop.time())
        self._track(conn)
        quic.connect(address.as_tuple(), now=loop.time())
        # Sent at the end of this event-loop turn, so that a stream opened at once (open_stream)
        # rides in the ClientHello's datagram as 0-RTT data.
        conn.schedule_transmit()
        return conn

    def _track(self, conn: PeerConnection) -> None:
        self._connections.add(conn)
        self._pending_handshakes.add(conn)
        host = conn.remote.host
        self._handshakes_by_source[host] = self._handshakes_by_source.get(host, 0) + 1
        self.register_cid(conn._quic.host_cid, conn)

    def _handshake_over(self, conn: PeerConnection) -> None:
        if conn in self._pending_handshakes:
            self._pending_handshakes.discard(conn)
            host = conn.remote.host
            left = self._handshakes_by_source.get(host, 1) - 1
            if left:
                self._handshakes_by_source[host] = left
            else:
                self._handshakes_by_source.pop(host, None)

    # -- the socket ------------------------------------------------------------------------------
    def relayed_datagram_received(self, sender: DatagramSender, src: AuraID, data: bytes) -> None:
        """A datagram that ``src`` sent us through a relay (``sender`` answers the same way)."""
        if not data:
            self._observer.datagram_dropped("malformed")
            return
        if not data[0] & _QUIC_FIXED_BIT:  # path probes come through relays too
            self._raw_datagram_received(data, virtual_address(src), sender)
            return
        conn = self._datagram_received(sender, data, virtual_address(src), relayed_from=src)
        if conn is not None:  # flushed with the socket's batch it came in, else once per event-loop turn
            if not self._relayed_touched and not self._in_batch:
                self._loop.call_soon(self._flush_relayed)
            self._relayed_touched[conn] = None

    def _flush_relayed(self) -> None:
        touched, self._relayed_touched = self._relayed_touched, {}
        for conn in touched:
            if not conn.is_closed:
                conn.flush()

    def _datagram_received(
        self, sock: DatagramSender, data: bytes, addr: Address, *, relayed_from: AuraID | None = None
    ) -> PeerConnection | None:
        """Feed one datagram to its connection; returns the connection, which still has to flush.

        The socket counts the bytes it receives (relayed ones were counted as relay datagrams).
        """
        if data and not data[0] & _QUIC_FIXED_BIT:
            self._raw_datagram_received(data, addr, sock)
            return None
        buf = QuicBuffer(data=data)
        try:
            header = pull_quic_header(buf, host_cid_length=8)
        except ValueError:
            self._observer.datagram_dropped("malformed")
            return None
        conn = self._cids.get(header.destination_cid)
        now = self._loop.time()
        accepted = conn is None
        if conn is None:
            conn = self._accept(sock, data, addr, header, now, relayed_from=relayed_from)
            if conn is None:
                return None
        try:
            conn.datagram_received(data, addr, now)
        except Exception:
            if not conn.is_closed:
                conn.abort(ErrorCode.INTERNAL_ERROR, "internal error")
            raise
        if accepted:
            conn.flush()
            if conn.datagrams_sent == 0 and not conn.is_closed:
                # A real Initial always draws an answer (at least an ACK). Nothing decrypted: keep no state.
                self._observer.datagram_dropped("undecryptable_initial")
                conn.discard("first packet was not a valid Initial")
                return None
        return conn

    def _raw_datagram_received(self, data: bytes, addr: Address, via: DatagramSender) -> None:
        handler = self._raw_handlers.get(data[0])
        if handler is None:
            self._observer.datagram_dropped("malformed")
            return
        handler(data, addr, via)

    def on_raw_datagram(self, first_bytes: Iterable[int], handler: RawHandler) -> None:
        """Hand datagrams that start with one of ``first_bytes`` (each below 0x40) to ``handler``.

        QUIC v1 sets the fixed bit (0x40) in the first byte of every packet (RFC 9000 section 17),
        so other protocols can share the node's sockets and its NAT mappings, as RFC 9443
        multiplexes STUN with QUIC; the DHT uses 0x00 and 0x01, path probes 0x02 and 0x03.
        ``handler(data, addr, via)`` runs on the event loop for each datagram; ``via`` answers by
        the same way it came (the socket, or the relay it came through; then ``addr`` is the
        sender's virtual address). It must not raise for bad input (it is network input).
        """
        for byte in first_bytes:
            if not 0 <= byte < _QUIC_FIXED_BIT:
                raise LocalProtocolError(f"first byte {byte:#04x} is not free: QUIC uses 0x40-0xff")
            if byte in self._raw_handlers:
                raise LocalProtocolError(f"first byte {byte:#04x} already has a handler")
            self._raw_handlers[byte] = handler

    def send_raw(self, data: bytes, addr: Address) -> None:
        """Send one non-QUIC datagram from the socket of ``addr``'s IP version (dropped if there is none)."""
        if not data or data[0] & _QUIC_FIXED_BIT:
            raise LocalProtocolError("a raw datagram must not look like QUIC: its first byte must be below 0x40")
        try:
            sock = self._socket_for(addr)
        except DialFailed:
            self._observer.datagram_dropped("no_socket")
            return
        sock.sendto(data, addr)

    def _accept(
        self, sock: DatagramSender, data: bytes, addr: Address, header: Any, now: float, *, relayed_from: AuraID | None
    ) -> PeerConnection | None:
        supported = _QUIC_VERSIONS
        if (
            header.version is not None
            and header.version not in supported
            and header.packet_type != QuicPacketType.VERSION_NEGOTIATION
        ):
            sock.sendto(
                encode_quic_version_negotiation(
                    source_cid=header.destination_cid,
                    destination_cid=header.source_cid,
                    supported_versions=[int(version) for version in supported],
                ),
                addr,
            )
            return None
        if header.packet_type != QuicPacketType.INITIAL or len(data) < SMALLEST_MAX_DATAGRAM_SIZE:
            self._observer.datagram_dropped("unknown_connection")
            return None
        if len(self._connections) >= self.config.max_connections:
            self._observer.datagram_dropped("connection_limit")
            return None
        original_dcid: bytes = header.destination_cid
        retry_scid: bytes | None = None
        from_source = self._handshakes_by_source.get(addr.host, 0)
        busy_source = from_source >= self.config.max_handshakes_per_source
        if from_source >= 4 * self.config.max_handshakes_per_source:
            self._observer.datagram_dropped("connection_limit")
            return None
        if header.token:
            try:
                original_dcid = self._retry.validate_token(
                    address=addr.as_tuple(), destination_cid=header.destination_cid, token=header.token, now=now
                )
            except ValueError:
                self._observer.datagram_dropped("bad_retry_token")
                return None
            retry_scid = header.destination_cid
        elif busy_source or len(self._pending_handshakes) >= self.config.retry_threshold:
            # Under load, a client must first prove it receives at its address (stateless Retry).
            source_cid = os.urandom(8)
            token = self._retry.create_token(
                address=addr.as_tuple(),
                original_destination_connection_id=header.destination_cid,
                retry_source_connection_id=source_cid,
                now=now,
            )
            retry = encode_quic_retry(
                version=header.version,
                source_cid=source_cid,
                destination_cid=header.source_cid,
                original_destination_cid=header.destination_cid,
                retry_token=token,
            )
            sock.sendto(retry, addr)
            self._observer.datagram_dropped("retry_sent")
            return None
        quic = NodeQuicConnection(
            configuration=self._quic_config(is_client=False),
            stream_window=self.config.stream_window,
            original_destination_connection_id=original_dcid,
            retry_source_connection_id=retry_scid,
        )
        conn = PeerConnection(self, quic, sock, addr, expected=relayed_from, now=now)
        quic._session_ticket_handler = lambda ticket: self._store_server_ticket(conn, ticket)
        quic._session_ticket_fetcher = lambda ticket: self._fetch_server_ticket(conn, ticket)
        self._track(conn)
        self.register_cid(header.destination_cid, conn)
        return conn

    def _store_server_ticket(self, conn: PeerConnection, ticket: SessionTicket) -> None:
        # aioquic issues the ticket as it reads the client's Finished, before our identity check
        # and the application's on_connection_ready callbacks: keep it aside until they pass.
        conn.issued_tickets.append(ticket)
        if conn.is_ready:
            self._commit_server_tickets(conn)

    def _commit_server_tickets(self, conn: PeerConnection) -> None:
        peer = conn.peer
        tickets, conn.issued_tickets = conn.issued_tickets, []
        if peer is None or conn.is_closed:
            return
        for ticket in tickets:
            self._server_tickets[ticket.ticket] = (ticket, peer)
        while len(self._server_tickets) > _MAX_TICKETS:
            self._server_tickets.popitem(last=False)

    def _fetch_server_ticket(self, conn: PeerConnection, ticket: bytes) -> SessionTicket | None:
        # Tickets may be reused until they expire. 0-RTT data they carry may thus be a replay
        # (RFC 8446 section 8): only replay-safe protocols are served before the handshake
        # completes (see PeerConnection._may_serve_early).
        entry = self._server_tickets.get(ticket)
        if entry is None or not entry[0].is_valid:
            return None
        # A resumed handshake has no certificates: the client proved its key in the session that
        # issued the ticket. aioquic would still wait for a client Certificate if the request flag
        # stayed set (and fail with unexpected_message), so clear it for this handshake.
        conn.resumed_peer = entry[1]
        conn.quic_tls_request_client_certificate(False)
        return entry[0]

    # -- called by connections -------------------------------------------------------------------
    def register_cid(self, cid: bytes, conn: PeerConnection) -> None:
        """Route datagrams for ``cid`` to ``conn``."""
        self._cids[cid] = conn

    def unregister_cid(self, cid: bytes) -> None:
        """Stop routing ``cid``."""
        self._cids.pop(cid, None)

    def connection_ready(self, conn: PeerConnection) -> None:
        """``conn`` authenticated its peer."""
        self._handshake_over(conn)
        assert conn.peer is not None
        current = self._peers.get(conn.peer)
        if current is None or not self._keeps(current, conn):
            self._peers[conn.peer] = conn
        self._observer.connection_opened("outbound" if conn.is_client else "inbound")
        if conn in self._resumptions:
            self._resumption_over(conn.peer, conn)
        for callback in self._on_ready:
            callback(conn)
        if conn.issued_tickets:
            self._commit_server_tickets(conn)

    def _keeps(self, current: PeerConnection, new: PeerConnection) -> bool:
        """Whether ``current`` stays the connection in use for its peer although ``new`` authenticated.

        The newest connection normally wins (a redial, a peer that restarted). But when both
        sides dialled at once, each end sees two connections in either order, and both must pick
        the same one: the one dialled by the smaller key. The other idles out.
        """
        if current.is_closed or not current.is_ready or current.is_client == new.is_client:
            return False
        assert current.ready_at is not None and new.ready_at is not None
        if new.ready_at - current.ready_at > self.config.connect_timeout:
            return False
        assert new.peer is not None
        ours, theirs = self.identity.aura_id.public_key, new.peer.public_key
        return (ours if current.is_client else theirs) < (ours if new.is_client else theirs)

    def connection_lost(self, conn: PeerConnection, error: BaseException) -> None:
        """``conn`` ended; forget its routes."""
        if conn in self._pending_handshakes:
            self._observer.connection_failed("outbound" if conn.is_client else "inbound", type(error).__name__)
        elif conn.peer is not None:
            self._observer.connection_closed()
        self._handshake_over(conn)
        self._connections.discard(conn)
        for cid in [cid for cid, owner in self._cids.items() if owner is conn]:
            del self._cids[cid]
        if conn.peer is not None and self._peers.get(conn.peer) is conn:
            del self._peers[conn.peer]
            for other in self._connections:  # the peer's other live connection, if any, takes over
                if other.peer == conn.peer and other.is_ready and not other.is_closed:
                    self._peers[conn.peer] = other
                    break
        for callback in self._on_closed:
            callback(conn)

    def dispatch_stream(self, stream: MeshStream, handler: StreamHandler) -> None:
        """Run ``handler`` for an incoming stream, owned by the endpoint's task group."""
        self._observer.stream_opened(stream.protocol)
        if self._tasks is None:
            stream.reset(ErrorCode.SHUTDOWN)
            return
        task = self._tasks.create_task(self._serve(stream, handler))
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    def stream_opened(self, conn: PeerConnection, protocol: str) -> None:
        """We opened a stream (for metrics)."""
        self._observer.stream_opened(protocol)

    def stream_refused(self, conn: PeerConnection, protocol: str) -> None:
        """A peer asked for a protocol nobody serves."""
        logger.info("refused stream for unknown protocol %r from %s", protocol, conn)
        self._observer.stream_refused(protocol)

    def protocol_violation(self, conn: PeerConnection, reason: str) -> None:
        """A peer broke a protocol: close its connection (its streams fail) and count it."""
        logger.info("closing connection to %s: protocol violation: %s", conn, reason)
        self._observer.protocol_violation()
        if not conn.is_closed:
            conn.abort(ErrorCode.PROTOCOL_VIOLATION, reason[:200])
        for callback in self._on_violation:
            callback(conn, reason)

    def on_protocol_violation(self, callback: Callable[[PeerConnection, str], None]) -> None:
        """Call ``callback(connection, reason)`` whenever a peer is cut off for breaking a protocol."""
        self._on_violation.append(callback)

    async def _serve(self, stream: MeshStream, handler: StreamHandler) -> None:
        try:
            await handler(stream)
        except ConnectionError_ as exc:
            logger.debug("stream %r ended: %s", stream, exc)
        except RemoteProtocolError as exc:  # the peer misbehaved: end its connection, not the node
            self.protocol_violation(stream.connection, f"{stream.protocol}: {exc}")
        except asyncio.CancelledError:
            stream.reset(ErrorCode.SHUTDOWN)
            raise
        except Exception:  # a buggy handler must not take the node down; log it loudly
            logger.exception("handler for %s failed", stream.protocol)
            stream.reset(ErrorCode.INTERNAL_ERROR)
