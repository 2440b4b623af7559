"""Our side of a relay: a session that sends packets to peers through it and receives theirs.

Theory of operation
-------------------
A :class:`RelayLink` is one session on one relay. :meth:`RelayLink.run` (a task of the node)
connects to the relay like to any peer (QUIC, its AuraID checked), opens an
``auralink/relay/1`` stream, says Hello, and waits for Welcome and its session key; then it
keeps the stream open, reading :class:`~auralink_node.relay.protocol.PeerGone` notices, and
reconnects with capped exponential backoff if the session breaks.

:meth:`RelayLink.path_to` gives a :class:`RelayPath` for one peer: a
:class:`~auralink_node.transport.connection.DatagramSender` that tags each QUIC datagram of the
connection to that peer and sends it to the relay as a Send datagram on the node's own socket.
Deliver datagrams from the relay's address come back through :meth:`RelayLink.datagram_received`,
which checks their tag and hands the packet to the endpoint exactly like a datagram from the
socket (:meth:`Endpoint.relayed_datagram_received
<auralink_node.transport.Endpoint.relayed_datagram_received>`). Sending never waits: a packet
is dropped while the session is down, as a broken router would drop it, and QUIC retransmits.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from auralink.errors import AuralinkError, RemoteProtocolError
from auralink.identity import AuraID, RelayAddress
from auralink.wire import Address
from auralink_node.protocols.framing import MessageReader
from auralink_node.relay.protocol import (
    CODEC,
    MAX_PACKET,
    PACKET_OFFSET,
    PEER_SLICE,
    RELAY_PROTOCOL,
    SEND_DATAGRAM,
    DatagramKey,
    Hello,
    PeerGone,
    Welcome,
)

if TYPE_CHECKING:
    from auralink_node.transport import Endpoint

__all__ = ["RelayLink", "RelayPath"]

logger = logging.getLogger(__name__)

BACKOFF = (0.2, 10.0)
"""First and longest wait between reconnection attempts, in seconds."""


class RelayPath:
    """Datagrams to ``peer`` through the relay of ``link``."""

    def __init__(self, link: RelayLink, peer: AuraID) -> None:
        self.link = link
        self.peer = peer
        self.path_name = f"relay:{link.relay.aura_id}"

    def sendto(self, data: bytes, addr: Address) -> None:
        """Send one datagram to :attr:`peer` through the relay (``addr`` is ignored: the relay knows the peer)."""
        self.link.send(self.peer, data)

    def __repr__(self) -> str:
        return f"RelayPath({self.peer.short()} via {self.link.relay.aura_id.short()})"


class RelayLink:
    """A session on one relay (use :meth:`run` as a task, :meth:`wait_ready` before sending)."""

    def __init__(
        self,
        endpoint: Endpoint,
        relay: RelayAddress,
        *,
        token: bytes = b"",
        on_change: Callable[[], None] | None = None,
        on_outcome: Callable[[RelayAddress, bool], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.relay = relay
        self._token = token
        self._on_change = on_change
        self._on_outcome = on_outcome
        self._ready = asyncio.Event()
        self.welcome: Welcome | None = None
        """The relay's limits, once the session is open."""
        self.stats: Counter[str] = Counter()
        """Packets ``sent``, ``received``, ``dropped_down`` and ``bad_datagram``; ``peer_gone`` notices."""
        self.gone: set[AuraID] = set()
        """Peers the relay said have no session there (cleared when they send again)."""
        self.last_error: str | None = None
        """Why the last session attempt or session ended, if it did."""
        self._paths: dict[bytes, RelayPath] = {}  # by the peer's key bytes, as relay datagrams name peers
        self.session_key = b""
        """The key of this session's relay datagrams (empty while no session is open)."""
        self._datagram_key: DatagramKey | None = None

    @property
    def is_ready(self) -> bool:
        """Whether the session is open."""
        return self._ready.is_set()

    async def wait_ready(self, timeout: float) -> None:
        """Wait until the session is open; raises :class:`TimeoutError` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    def path_to(self, peer: AuraID) -> RelayPath:
        """A datagram sender to ``peer`` through this relay."""
        path = self._paths.get(peer.public_key)
        if path is None:
            if len(self._paths) >= 4096:
                self._paths.clear()
            path = self._paths[peer.public_key] = RelayPath(self, peer)
        return path

    def send(self, peer: AuraID, packet: bytes) -> None:
        """Send one packet to ``peer`` through the relay, or drop it if the session cannot take it now."""
        key = self._datagram_key
        if key is None or not 0 < len(packet) <= MAX_PACKET:
            self.stats["dropped_down"] += 1
            return
        self.endpoint.send_raw(key.seal(SEND_DATAGRAM, peer.public_key, packet), self.relay.address)
        self.stats["sent"] += 1

    async def run(self) -> None:
        """Keep a session open until cancelled, reconnecting after failures."""
        delay = BACKOFF[0]
        while True:
            try:
                await self._session()
                delay = BACKOFF[0]  # the session ran and ended: try again soon
            except (AuralinkError, TimeoutError, OSError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                if self._on_outcome is not None:
                    self._on_outcome(self.relay, False)
                logger.info("relay %s: %s; retrying in %.1f s", self.relay.aura_id.short(), self.last_error, delay)
            finally:
                was_ready = self._ready.is_set()
                self._ready.clear()
                self.session_key = b""
                self._datagram_key = None
                if was_ready and self._on_change is not None:
                    self._on_change()
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF[1])

    def datagram_received(self, data: bytes) -> None:
        """A Deliver datagram from this relay's address: hand its packet to the endpoint if the tag is ours."""
        key = self._datagram_key
        if key is None:
            return
        try:
            key.check(data)
        except AuralinkError:
            self.stats["bad_datagram"] += 1
            return
        path = self._paths.get(data[PEER_SLICE])  # no AuraID built per packet once a peer has a path
        if path is None:
            path = self.path_to(AuraID(data[PEER_SLICE]))
        src = path.peer
        self.stats["received"] += 1
        if self.gone:
            self.gone.discard(src)
        self.endpoint.relayed_datagram_received(path, src, data[PACKET_OFFSET:])

    async def _session(self) -> None:
        conn = await self.endpoint.connect(self.relay.aura_id, [self.relay.address])
        stream = await conn.open_stream(RELAY_PROTOCOL)
        stream.write(CODEC.encode(Hello(self._token)))
        reader = MessageReader(stream, CODEC)
        async with asyncio.timeout(10.0):
            self.welcome = await reader.expect(Welcome)
        self.session_key = self.welcome.session_key
        self._datagram_key = DatagramKey(self.session_key)
        self.last_error = None
        self._ready.set()
        if self._on_outcome is not None:
            self._on_outcome(self.relay, True)
        if self._on_change is not None:
            self._on_change()
        logger.info("relay session open on %s", self.relay)
        while True:
            message = await reader.next()
            if message is None:
                self.last_error = "the relay ended the session"
                return
            if isinstance(message, PeerGone):
                self.stats["peer_gone"] += 1
                self.gone.add(message.dst)
            else:
                raise RemoteProtocolError(f"relay sent {type(message).__name__} inside a session")
