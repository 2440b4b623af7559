"""One authenticated QUIC connection to a peer: the asyncio pump around aioquic.

Theory of operation
-------------------
:class:`PeerConnection` is an adapter in the shape of aioquic's ``asyncio/protocol.py``: it owns
a sans-I/O :class:`~auralink_node.transport.quic.NodeQuicConnection` and pumps it. Every input
(a datagram from the endpoint's socket, a timer firing, the application writing) ends in
:meth:`_process`, which drains aioquic's events, sends whatever datagrams are due through the
endpoint, and re-arms exactly one ``loop.call_at`` timer. That timer is the earliest of
aioquic's own timer, the keepalive deadline and, until the peer is authenticated, the
handshake deadline. Nothing polls.

Authentication happens on ``HandshakeCompleted``: the key in the peer's certificate must be
the AuraID we dialled (client side); a server records the key the client proved, and refuses
a client that sent no certificate. A mismatch closes the connection with
:data:`ErrorCode.IDENTITY_MISMATCH` and fails :meth:`wait_ready` with
:class:`~auralink.errors.PeerIdentityMismatch`. Incoming streams are dispatched only after
authentication, so a handler always knows who is calling (``stream.peer``).

One exception, 0-RTT (RFC 9001 section 4.6, RFC 8446 section 8). A client that resumes a
session may open a stream before its handshake ends (:meth:`start_stream`); what it writes
travels in 0-RTT packets, encrypted with a key derived from the session ticket, so only the
server that issued the ticket can read it. On the server such data is authentic (the PSK binder
and the AEAD prove it comes from the key the ticket was issued to: :attr:`resumed_peer`) but not
fresh: an on-path attacker can replay the client's first flight. So the server dispatches a
stream that arrives in 0-RTT before the handshake completes only if its protocol is registered
``replay_safe`` (idempotent: ping, echo); every other stream is held until the client's
Finished completes the handshake, which a replayed flight never does. A client's incoming
data is always held until the server's key is checked.

The connection ends in exactly one of two ways: closed (we or the peer closed it with
``NO_ERROR`` or ``SHUTDOWN``, or it idled out) or broken (any other error code, a handshake
that failed or timed out). Streams and waiters see :class:`~auralink.errors.ConnectionClosed`
or :class:`~auralink.errors.ConnectionBroken` accordingly.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from aioquic.quic import events
from aioquic.tls import SessionTicket

from auralink.errors import (
    ConnectionBroken,
    ConnectionClosed,
    ConnectionError_,
    DialFailed,
    LocalProtocolError,
    PeerIdentityMismatch,
    RemoteProtocolError,
)
from auralink.identity import AuraID
from auralink.wire import Address
from auralink_node.transport.quic import NodeQuicConnection
from auralink_node.transport.streams import ErrorCode, MeshStream, StreamHeaderDecoder, encode_stream_header
from auralink_node.transport.tls import peer_aura_id

if TYPE_CHECKING:
    from auralink_node.transport.endpoint import Endpoint

__all__ = ["DatagramSender", "PeerConnection"]

logger = logging.getLogger(__name__)

_CLEAN_CODES = {ErrorCode.NO_ERROR, ErrorCode.SHUTDOWN}


class DatagramSender(Protocol):
    """Where a connection's datagrams go: a UDP socket, or a relay (see :mod:`auralink_node.relay`)."""

    def sendto(self, data: bytes, addr: Address) -> None:
        """Send one datagram to ``addr`` (a relay ignores it: it knows the peer)."""

    @property
    def path_name(self) -> str:
        """``direct`` or ``relay:AURAID``: how :attr:`PeerConnection.path` names this sender."""


class PeerConnection:
    """An authenticated connection to one peer, carrying any number of :class:`MeshStream`."""

    def __init__(
        self,
        endpoint: Endpoint,
        quic: NodeQuicConnection,
        sender: DatagramSender,
        remote: Address,
        *,
        expected: AuraID | None,
        now: float,
    ) -> None:
        self._endpoint = endpoint
        self._quic = quic
        self._sender = sender
        self._loop = asyncio.get_running_loop()
        self.remote = remote
        """Where our packets go now: the peer's address on a direct path, a virtual one via a relay."""
        self._quic_addr = remote.as_tuple()  # aioquic always sees this one address: paths are ours to pick
        self.expected = expected
        """The AuraID that was dialled, or that a relay named as the sender; None for a direct accept."""
        self.peer: AuraID | None = None
        """The AuraID the peer proved in the handshake; None until then."""
        self.ready_at: float | None = None
        """Loop time at which the peer was authenticated."""
        self.is_client = quic.configuration.is_client
        self.session_resumed = False
        self.early_data_accepted = False
        self.resumed_peer: AuraID | None = None
        """Server side: the key that proved itself in the session this one resumes (set from the ticket)."""
        self.issued_tickets: list[SessionTicket] = []
        """Server side: tickets issued on this connection, usable once the application has accepted the peer."""
        self._handshake_deadline = now + endpoint.config.handshake_timeout
        self._last_received = now
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._error: ConnectionError_ | None = None
        self._streams: dict[int, MeshStream] = {}
        self._blocked_writers: set[MeshStream] = set()
        self._incoming: dict[int, StreamHeaderDecoder] = {}
        self._held: list[events.StreamDataReceived] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._transmit_scheduled = False
        self._ping_uid = 0
        self.datagrams_sent = 0
        """How many datagrams this connection has sent (an accepted connection that never answers is junk)."""

    def __repr__(self) -> str:
        who = self.peer or self.expected
        return f"PeerConnection({who.short() if who else '?'} @ {self.remote})"

    # -- status ----------------------------------------------------------------------------
    @property
    def is_ready(self) -> bool:
        """True once the handshake completed and the peer is authenticated."""
        return self._ready.done() and self._ready.exception() is None

    @property
    def is_closed(self) -> bool:
        """True once the connection has ended, cleanly or not."""
        return self._closed.done()

    @property
    def rtt(self) -> float | None:
        """aioquic's smoothed round-trip time in seconds, once measured."""
        recovery = self._quic._loss
        return float(recovery._rtt_smoothed) if recovery._rtt_initialized else None

    @property
    def alpn(self) -> str | None:
        """The application protocol negotiated in the handshake."""
        return self._quic.tls.alpn_negotiated if self._quic.tls is not None else None

    async def wait_ready(self) -> None:
        """Wait for the authenticated handshake; raises why it failed."""
        await asyncio.shield(self._ready)

    def when_handshake_over(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback(None)`` once the peer is authenticated, or ``callback(error)`` if that fails."""

        def done(ready: asyncio.Future[None]) -> None:
            callback(ConnectionClosed("connection closed") if ready.cancelled() else ready.exception())

        self._ready.add_done_callback(done)

    async def wait_closed(self) -> None:
        """Wait until the connection has ended."""
        await asyncio.shield(self._closed)

    # -- input -----------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The path our packets take: ``direct:HOST:PORT`` or ``relay:AURAID``."""
        name = self._sender.path_name
        return f"direct:{self.remote}" if name == "direct" else name

    @property
    def sender(self) -> DatagramSender:
        """Where our datagrams go now (see :meth:`set_path`)."""
        return self._sender

    @property
    def is_relayed(self) -> bool:
        """Whether our packets go through a relay."""
        return self._sender.path_name != "direct"

    def set_path(self, sender: DatagramSender, remote: Address) -> None:
        """Send from now on through ``sender`` to ``remote``; the QUIC connection does not notice.

        aioquic keeps seeing the one address the connection started with, so moving between a
        relay and a direct path needs no QUIC migration and loses nothing in flight (lost
        packets are retransmitted as usual). Which path to use is the caller's decision.
        """
        self._sender = sender
        self.remote = remote

    def datagram_received(self, data: bytes, addr: Address, now: float) -> None:
        """Feed one datagram, whichever path it came by; the caller then calls :meth:`flush`."""
        self._last_received = now
        self._quic.receive_datagram(data, self._quic_addr, now)

    def flush(self) -> None:
        """Handle what the datagrams fed since the last flush produced, and send the answers."""
        self._process()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self._loop.time()
        if not self.is_ready and now >= self._handshake_deadline and not self._closed.done():
            self.abort(ErrorCode.HANDSHAKE_TIMEOUT, "handshake timed out")
        elif self.is_ready and now >= self._keepalive_at():
            self._ping_uid += 1
            self._quic.send_ping(self._ping_uid)
        quic_timer = self._quic.get_timer()
        if quic_timer is not None and quic_timer <= now:
            self._quic.handle_timer(now)
        self._process()

    def _keepalive_at(self) -> float:
        # Only the connection in use for the peer is kept alive: a duplicate (both sides dialled
        # at once) idles out once its last stream is done.
        if self.peer is not None and self._endpoint.connection_to(self.peer) is not self:
            return math.inf
        return self._last_received + self._endpoint.config.keepalive_interval

    # -- the pump --------------------------------------------------------------------------
    def _process(self) -> None:
        event = self._quic.next_event()
        while event is not None:
            self._handle_event(event)
            event = self._quic.next_event()
        self._transmit()

    def _transmit(self) -> None:
        self._transmit_scheduled = False
        now = self._loop.time()
        sender, remote = self._sender, self.remote
        for data, _ in self._quic.datagrams_to_send(now):
            self.datagrams_sent += 1
            sender.sendto(data, remote)
        if self._blocked_writers:  # only streams waiting in drain(), not every stream, on this hot path
            self._blocked_writers = {stream for stream in self._blocked_writers if not stream._wake_writer()}
        self._arm_timer()

    def schedule_transmit(self) -> None:
        """Send soon: batches the writes of one event-loop turn into as few packets as possible."""
        if not self._transmit_scheduled and not self._closed.done():
            self._transmit_scheduled = True
            self._loop.call_soon(self._process)

    def _arm_timer(self) -> None:
        if self._closed.done():
            return
        deadlines = [t for t in (self._quic.get_timer(),) if t is not None]
        if not self.is_ready:
            deadlines.append(self._handshake_deadline)
        elif (keepalive := self._keepalive_at()) < math.inf:
            deadlines.append(keepalive)
        if not deadlines:
            return
        at = min(deadlines)
        if self._timer is not None and self._timer_at is not None and self._timer_at <= at:
            return  # an earlier timer is armed: it fires, finds nothing due yet, and re-arms
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._on_timer)

    def _handle_event(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived):
            if self.peer is not None or self._may_serve_early(event):
                self._stream_data(event)
            else:
                self._held.append(event)
        elif isinstance(event, events.HandshakeCompleted):
            self._handshake_completed(event)
        elif isinstance(event, events.StreamReset):
            self._stream_reset(event.stream_id, event.error_code)
        elif isinstance(event, events.ConnectionIdIssued):
            self._endpoint.register_cid(event.connection_id, self)
        elif isinstance(event, events.ConnectionIdRetired):
            self._endpoint.unregister_cid(event.connection_id)
        elif isinstance(event, events.ConnectionTerminated):
            self._terminated(event)

    def _handshake_completed(self, event: events.HandshakeCompleted) -> None:
        self.session_resumed = event.session_resumed
        self.early_data_accepted = event.early_data_accepted
        proven = peer_aura_id(self._quic) or (self.resumed_peer if event.session_resumed else None)
        if self.is_client:
            if proven is None and event.session_resumed:
                proven = self.expected  # the ticket came from a connection that proved this key
            if proven != self.expected:
                assert self.expected is not None
                self._error = PeerIdentityMismatch(str(self.expected), str(proven) if proven else None)
                self.abort(ErrorCode.IDENTITY_MISMATCH, "identity mismatch")
                return
        elif proven is None:
            self.abort(ErrorCode.NO_CLIENT_CERTIFICATE, "client certificate required")
            return
        elif self.expected is not None and proven != self.expected:  # accepted via a relay that named the sender
            self.abort(ErrorCode.IDENTITY_MISMATCH, "the client's key is not the one the relay named")
            return
        self.peer = proven
        self.ready_at = self._loop.time()
        if not self._ready.done():
            self._ready.set_result(None)
        self._endpoint.connection_ready(self)
        held, self._held = self._held, []
        for data_event in held:
            self._stream_data(data_event)

    def _may_serve_early(self, event: events.StreamDataReceived) -> bool:
        """Whether 0-RTT data may go to its handler before the handshake completes (see the module doc)."""
        if self.is_client or self.resumed_peer is None or not self._quic.tls.early_data_accepted:
            return False
        if event.stream_id in self._streams:
            return True  # a replay-safe stream already dispatched early
        if event.stream_id in self._incoming or any(held.stream_id == event.stream_id for held in self._held):
            return False  # a header split over several frames: wait for the handshake, as for any stream
        try:
            header = StreamHeaderDecoder().feed(event.data)
        except RemoteProtocolError:
            return False  # judged (and refused) once the handshake completes
        return header is not None and self._endpoint.router.is_replay_safe(header[0])

    def _stream_data(self, event: events.StreamDataReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            stream._feed(event.data, event.end_stream)
            return
        if self._is_local_stream(event.stream_id):
            return  # data for a stream we already reset and forgot
        decoder = self._incoming.setdefault(event.stream_id, StreamHeaderDecoder())
        try:
            header = decoder.feed(event.data)
        except RemoteProtocolError as exc:
            self._incoming.pop(event.stream_id, None)
            self._endpoint.protocol_violation(self, f"bad stream header: {exc}")
            return
        if header is None:
            if event.end_stream:
                self._incoming.pop(event.stream_id, None)
            return
        del self._incoming[event.stream_id]
        protocol, rest = header
        handler = self._endpoint.router.handler(protocol)
        if handler is None:
            self._reset_incoming(event.stream_id, ErrorCode.PROTOCOL_UNSUPPORTED)
            self._endpoint.stream_refused(self, protocol)
            return
        stream = self._new_stream(event.stream_id, protocol)
        stream._feed(rest, event.end_stream)
        self._endpoint.dispatch_stream(stream, handler)

    def _is_local_stream(self, stream_id: int) -> bool:
        return (stream_id & 1) == (0 if self.is_client else 1)

    def _reset_incoming(self, stream_id: int, code: int) -> None:
        self._quic.reset_stream(stream_id, code)
        self._quic.stop_stream(stream_id, code)
        self._quic.forget_stream(stream_id)

    def _stream_reset(self, stream_id: int, error_code: int) -> None:
        self._incoming.pop(stream_id, None)
        stream = self._streams.pop(stream_id, None)
        self._quic.forget_stream(stream_id)
        if stream is not None:
            stream._reset_by_peer(error_code)

    def _terminated(self, event: events.ConnectionTerminated) -> None:
        if self._error is None:
            reason = event.reason_phrase or f"code {event.error_code:#x}"
            known = self.peer or self.expected
            who = known.short() if known is not None else str(self.remote)
            if not self.is_ready:
                self._error = DialFailed(f"handshake with {who} at {self.remote} failed: {reason}", (reason,))
            elif event.error_code in _CLEAN_CODES:
                self._error = ConnectionClosed(f"connection to {who} closed: {reason}")
            else:
                self._error = ConnectionBroken(f"connection to {who} broken: {reason}")
        self._finish()

    def _finish(self) -> None:
        if self._closed.done():
            return
        error = self._error or ConnectionClosed("connection closed")
        if not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # mark retrieved: nobody may be waiting
        for stream in self._streams.values():
            stream._fail(error)
        self._streams.clear()
        self._incoming.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._closed.set_result(None)
        self._endpoint.connection_lost(self, error)

    def proven_key(self) -> AuraID | None:
        """The key in the peer's certificate from this handshake, if it sent one."""
        return peer_aura_id(self._quic)

    @property
    def claimed_peer(self) -> AuraID | None:
        """Who the peer is: proven by the handshake, or (during a 0-RTT handshake) by its session ticket."""
        return self.peer if self.peer is not None else self.resumed_peer

    @property
    def resuming(self) -> bool:
        """True if this client connection offered a session ticket."""
        return self.is_client and self._quic.configuration.session_ticket is not None

    def quic_tls_request_client_certificate(self, wanted: bool) -> None:
        """Ask (or stop asking) the client for a certificate in the handshake under way."""
        self._quic.tls._request_client_certificate = wanted

    def discard(self, reason: str) -> None:
        """Forget a connection that never got going, without sending anything."""
        if self._error is None:
            self._error = DialFailed(f"{self!r}: {reason}")
        self._finish()

    def abort(self, code: int, reason: str) -> None:
        """End the connection with an error ``code`` (a misbehaving peer, a timeout)."""
        self._abort(code, reason)

    def _abort(self, code: int, reason: str) -> None:
        self._quic.close(error_code=code, reason_phrase=reason)
        if self._error is None:
            self._error = ConnectionBroken(f"{self!r}: {reason}")
        self._transmit()
        self._finish()

    # -- used by streams and the application ------------------------------------------------
    def unsent_bytes(self, stream_id: int) -> int:
        """Bytes of a stream not yet acknowledged by the peer."""
        return self._quic.unsent_bytes(stream_id)

    def writer_blocked(self, stream: MeshStream) -> None:
        """``stream`` waits in ``drain()``: check it whenever acknowledgements may have freed room."""
        self._blocked_writers.add(stream)

    def consumed(self, stream_id: int, nbytes: int) -> None:
        """The application read ``nbytes`` of a stream: grant the peer credit for them."""
        if self._quic.consume(stream_id, nbytes):
            self.schedule_transmit()  # only when a MAX_STREAM_DATA update is due

    def send_stream_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        """Queue stream data in aioquic and send soon."""
        if self._closed.done():
            raise self._error or ConnectionClosed("connection closed")
        self._quic.send_stream_data(stream_id, data, end_stream)
        self.schedule_transmit()

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        """Abandon a stream in both directions."""
        if not self._closed.done():
            self._quic.reset_stream(stream_id, error_code)
            if not self._is_local_stream(stream_id) or stream_id in self._streams:
                self._quic.stop_stream(stream_id, error_code)
            self.schedule_transmit()
        self._streams.pop(stream_id, None)
        self._quic.forget_stream(stream_id)

    def _new_stream(self, stream_id: int, protocol: str) -> MeshStream:
        config = self._endpoint.config
        stream = MeshStream(
            self, stream_id, protocol, high_water=config.write_high_water, low_water=config.write_low_water
        )
        self._streams[stream_id] = stream
        return stream

    async def open_stream(self, protocol: str) -> MeshStream:
        """Open a stream speaking ``protocol``; data may follow the header at once."""
        await self.wait_ready()
        return self.start_stream(protocol)

    def start_stream(self, protocol: str) -> MeshStream:
        """Open a stream now, even while the handshake is under way.

        On a client that resumes a session whose ticket allows early data, the header and what
        is written before the handshake ends go out as 0-RTT data (replayable: see the module
        doc); otherwise aioquic keeps them until the handshake completes. Nothing the peer sends
        is delivered before its key has been checked. If the handshake fails, the stream fails
        with the same error as :meth:`wait_ready`.
        """
        if self._closed.done():
            raise self._error or ConnectionClosed("connection closed")
        header = encode_stream_header(protocol)
        stream_id = self._quic.get_next_available_stream_id()
        stream = self._new_stream(stream_id, protocol)
        self.send_stream_data(stream_id, header, end_stream=False)
        self._endpoint.stream_opened(self, protocol)
        return stream

    def close(self, code: int = ErrorCode.NO_ERROR, reason: str = "closed") -> None:
        """Close the connection; pending streams fail with :class:`ConnectionClosed`."""
        if self._closed.done():
            return
        if code not in _CLEAN_CODES:
            raise LocalProtocolError("close() takes a clean code; use abort paths for errors")
        self._error = ConnectionClosed(f"{self!r} closed locally: {reason}")
        self._quic.close(error_code=code, reason_phrase=reason)
        self._transmit()
        self._finish()
