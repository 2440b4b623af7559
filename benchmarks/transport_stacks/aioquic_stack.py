"""Plain aioquic with mutual TLS: the baseline every other stack is divided by.

Theory of operation
-------------------
Both sides hold an Ed25519 key and present a self-signed certificate for it. aioquic verifies
the TLS CertificateVerify signature (so each side proves it holds the key in its certificate) but
has no notion of pinned raw keys and no public switch to request a client certificate, so:

* the server sets the internal flag ``tls._request_client_certificate`` on every connection, by
  wrapping that connection's ``_initialize`` (the TLS context only exists once the first Initial
  arrives, and the CertificateRequest is written while the same datagram is processed);
* both sides run with ``verify_mode=CERT_NONE`` and compare the peer certificate's Ed25519 key
  with the expected one when ``HandshakeCompleted`` arrives. A server that does not accept the
  client closes the connection with ``UNAUTHORIZED``; a client that does not accept the server
  does the same.

Session resumption and 0-RTT. The server issues session tickets and keeps them in a
single-use ``TicketStore``, each bound to the client key proven on the connection that earned
it; a resumed handshake carries no certificates, so that binding is the client's identity. The
client likewise keeps only tickets earned on a connection whose server key it verified.

aioquic 1.7.2 cannot combine the two by itself: with ``_request_client_certificate`` set, a
server that accepts a PSK sends no CertificateRequest yet still waits for a client Certificate,
and the resumed handshake fails. The per-connection ticket fetcher therefore turns the flag off
when, and only when, it hands back a known ticket. If that ticket is then not used, the
handshake completes with neither a resumed session nor a client certificate, and the connection
is refused, so the workaround fails closed.

Stream data that arrives before the connection is authorised (0-RTT data on a connection
whose ticket is unknown cannot be decrypted, so in practice none) also closes the connection.

The server is event-driven (``quic_event_received``), not built on asyncio streams; the client
uses aioquic's asyncio ``connect()`` and stream reader/writer API, as an application would.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import os
import ssl
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, QuicEvent, StreamDataReceived
from aioquic.tls import SessionTicket
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from benchmarks.transport_stacks._common import (
    AUTH_CHECK_SKIPPED,
    CLOSE_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    ECHO_MESSAGE_SIZE,
    ECHO_TAG,
    ECHO_TIMEOUT_S,
    LOOPBACK,
    SINK_REPLY_SIZE,
    SINK_TAG,
    STOP_SIGNALS,
    ClientOptions,
    ClientReport,
    Identity,
    Payload,
    ServerInfo,
    ServerOptions,
    UploadOutcome,
    encode_sink_reply,
    install_stop_triggers,
    package_versions,
    run_stack_cli,
    summarize,
    summarize_uploads,
    upload_timeout_s,
)

STACK = "aioquic"
ALPN = "auralink-bench/1"
UNAUTHORIZED = 0x101
"""Application error code for a connection closed because the peer's key is not accepted."""
TICKET_WAIT_S = 2.0
"""How long a client waits for the session ticket that follows a handshake."""
RTT_WARMUP = 20
"""Echo round trips done before the measured ones."""


# -- identity -----------------------------------------------------------------------------------


def self_signed_certificate(key: Ed25519PrivateKey) -> x509.Certificate:
    """A certificate that only carries ``key``: its subject names the key, validity is one day."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, raw.hex())])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, None)
    )


def certificate_key(certificate: x509.Certificate | None) -> bytes | None:
    """The raw Ed25519 key in a peer certificate, or None if there is none."""
    if certificate is None:
        return None
    public_key = certificate.public_key()
    if not isinstance(public_key, Ed25519PublicKey):
        return None
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def peer_certificate(quic: QuicConnection) -> x509.Certificate | None:
    """The certificate the peer presented in this handshake (aioquic keeps it private)."""
    certificate: x509.Certificate | None = quic.tls._peer_certificate
    return certificate


def make_configuration(identity: Identity, *, is_client: bool) -> QuicConfiguration:
    """A configuration presenting ``identity``'s certificate; peer keys are checked by hand."""
    key = identity.private_key()
    return QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        certificate=self_signed_certificate(key),
        private_key=key,
        verify_mode=ssl.CERT_NONE,
        server_name=LOOPBACK if is_client else None,
    )


# -- server -------------------------------------------------------------------------------------


class TicketStore:
    """Single-use TLS session tickets, each bound to the client key it was issued to."""

    def __init__(self) -> None:
        self._tickets: dict[bytes, tuple[SessionTicket, bytes]] = {}

    def add(self, ticket: SessionTicket, client_key: bytes) -> None:
        """Remember a ticket issued on a connection authenticated as ``client_key``."""
        self._tickets[ticket.ticket] = (ticket, client_key)

    def pop(self, ticket_id: bytes) -> tuple[SessionTicket, bytes] | None:
        """Take a ticket out (single use limits 0-RTT replay, RFC 8446 section 8.1)."""
        return self._tickets.pop(ticket_id, None)


@dataclass(slots=True)
class _ServerStream:
    """What the server knows about one stream."""

    service: bytes | None = None
    """``ECHO_TAG`` or ``SINK_TAG`` once the first byte arrived."""
    count: int = 0
    """Sink: bytes received so far."""
    hasher: Any = field(default_factory=hashlib.sha256)
    """Sink: SHA-256 of the bytes received so far."""


class MutualTlsServerProtocol(QuicConnectionProtocol):
    """One server-side connection: mutual TLS, ticket binding, echo and sink services."""

    def __init__(
        self, quic: QuicConnection, stream_handler: Any = None, *, identity: Identity, tickets: TicketStore
    ) -> None:
        super().__init__(quic, stream_handler)
        self._identity = identity
        self._tickets = tickets
        self._client_key: bytes | None = None
        self._unbound_tickets: list[SessionTicket] = []
        self._streams: dict[int, _ServerStream] = {}
        initialize = quic._initialize

        def initialize_with_client_auth(peer_cid: bytes) -> None:
            initialize(peer_cid)
            quic.tls._request_client_certificate = True
            quic.tls.get_session_ticket_cb = self._fetch_ticket

        quic._initialize = initialize_with_client_auth  # type: ignore[method-assign]
        quic._session_ticket_handler = self._ticket_issued

    def _fetch_ticket(self, ticket_id: bytes) -> SessionTicket | None:
        entry = self._tickets.pop(ticket_id)
        if entry is None:
            return None
        ticket, client_key = entry
        self._client_key = client_key
        # A resumed handshake has no client Certificate; see the module docstring.
        self._quic.tls._request_client_certificate = False
        return ticket

    def _ticket_issued(self, ticket: SessionTicket) -> None:
        if self._client_key is not None:
            self._tickets.add(ticket, self._client_key)
        else:
            self._unbound_tickets.append(ticket)

    def _refuse(self, reason: str) -> None:
        self._client_key = None
        self._unbound_tickets.clear()
        self._quic.close(error_code=UNAUTHORIZED, reason_phrase=reason)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            if not event.session_resumed:
                self._client_key = certificate_key(peer_certificate(self._quic))
            if not self._identity.accepts(self._client_key):
                self._refuse("client key not accepted")
                return
            assert self._client_key is not None
            for ticket in self._unbound_tickets:
                self._tickets.add(ticket, self._client_key)
            self._unbound_tickets.clear()
        elif isinstance(event, StreamDataReceived):
            if not self._identity.accepts(self._client_key):
                self._refuse("stream data before authentication")
                return
            self._stream_data(event)

    def _stream_data(self, event: StreamDataReceived) -> None:
        stream = self._streams.setdefault(event.stream_id, _ServerStream())
        data = event.data
        if stream.service is None and data:
            stream.service, data = data[:1], data[1:]
        if stream.service == ECHO_TAG:
            if data or event.end_stream:
                self._quic.send_stream_data(event.stream_id, data, end_stream=event.end_stream)
        elif stream.service == SINK_TAG:
            stream.count += len(data)
            stream.hasher.update(data)
            if event.end_stream:
                reply = encode_sink_reply(stream.count, stream.hasher.digest())
                self._quic.send_stream_data(event.stream_id, reply, end_stream=True)
        elif stream.service is not None:
            self._quic.reset_stream(event.stream_id, UNAUTHORIZED)
        if event.end_stream:
            self._streams.pop(event.stream_id, None)


async def serve_async(options: ServerOptions) -> None:
    """Serve until stdin closes or a stop signal arrives."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    install_stop_triggers(lambda: loop.call_soon_threadsafe(stop.set))
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    server: QuicServer = await serve(
        LOOPBACK,
        0,
        configuration=make_configuration(options.identity, is_client=False),
        create_protocol=partial(MutualTlsServerProtocol, identity=options.identity, tickets=TicketStore()),
    )
    try:
        assert server._transport is not None
        port = server._transport.get_extra_info("sockname")[1]
        ServerInfo(
            stack=STACK,
            host=LOOPBACK,
            port=port,
            public_key_hex=options.identity.public_key.hex(),
            pid=os.getpid(),
            address={"alpn": ALPN},
        ).announce(options.port_file)
        await stop.wait()
    finally:
        server.close()


def serve_main(options: ServerOptions) -> None:
    """Entry point of ``server``."""
    asyncio.run(serve_async(options))


# -- client -------------------------------------------------------------------------------------


class PinnedServerProtocol(QuicConnectionProtocol):
    """One client-side connection that accepts only the pinned server key.

    ``verified`` resolves once the handshake completed and the server was accepted, either by
    its certificate or, on a resumed session, by the ticket (kept only from verified servers).
    """

    def __init__(self, quic: QuicConnection, stream_handler: Any = None, *, server_key: bytes) -> None:
        super().__init__(quic, stream_handler)
        self.server_key = server_key
        self.verified: asyncio.Future[HandshakeCompleted] = asyncio.get_running_loop().create_future()
        self.close_reason: str | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted) and not self.verified.done():
            if event.session_resumed or certificate_key(peer_certificate(self._quic)) == self.server_key:
                self.verified.set_result(event)
            else:
                self._quic.close(error_code=UNAUTHORIZED, reason_phrase="server key not accepted")
                self.verified.set_exception(ConnectionError("server key not accepted"))
                self.verified.exception()  # mark retrieved: a caller may never await it
        elif isinstance(event, ConnectionTerminated):
            self.close_reason = f"{event.error_code:#x} {event.reason_phrase}"
            if not self.verified.done():
                self.verified.set_exception(ConnectionError(f"connection closed: {self.close_reason}"))
                self.verified.exception()  # mark retrieved: a caller may never await it
        super().quic_event_received(event)


class Client:
    """Runs the measurements; one ``connect()`` per connection, as an application would."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self.server_key = options.server_key()
        self.host = options.server.host
        self.port = options.server.port
        self.protocol = partial(PinnedServerProtocol, server_key=self.server_key)
        self._template = make_configuration(options.identity, is_client=True)

    def configuration(self, ticket: SessionTicket | None = None, identity: Identity | None = None) -> QuicConfiguration:
        """A fresh configuration (``connect()`` mutates it) reusing the certificate."""
        if identity is not None:
            return make_configuration(identity, is_client=True)
        return QuicConfiguration(
            is_client=True,
            alpn_protocols=[ALPN],
            certificate=self._template.certificate,
            private_key=self._template.private_key,
            verify_mode=ssl.CERT_NONE,
            server_name=LOOPBACK,
            session_ticket=ticket,
        )

    def session(
        self, configuration: QuicConfiguration, tickets: TicketInbox | None = None, *, wait_connected: bool = True
    ) -> contextlib.AbstractAsyncContextManager[QuicConnectionProtocol]:
        return connect(
            self.host,
            self.port,
            configuration=configuration,
            create_protocol=self.protocol,
            session_ticket_handler=tickets.put if tickets is not None else None,
            wait_connected=wait_connected,
        )

    async def connect_once(self) -> tuple[float, float]:
        """One fresh connection: (ms to verified, ms to first echo)."""
        message = bytes(ECHO_MESSAGE_SIZE)
        start = time.perf_counter()
        async with asyncio.timeout(CONNECT_TIMEOUT_S + ECHO_TIMEOUT_S + CLOSE_TIMEOUT_S):
            async with self.session(self.configuration()) as protocol:
                assert isinstance(protocol, PinnedServerProtocol)
                await protocol.verified
                connected = time.perf_counter()
                reader, writer = await protocol.create_stream()
                writer.write(ECHO_TAG + message)
                await reader.readexactly(ECHO_MESSAGE_SIZE)
                echoed = time.perf_counter()
        return (connected - start) * 1e3, (echoed - start) * 1e3

    async def reconnects(self, count: int) -> tuple[list[float], dict[str, Any]]:
        """Fresh connection for a ticket, then ``count`` resumed ones, each sending 0-RTT data."""
        message = bytes(ECHO_MESSAGE_SIZE)
        inbox = TicketInbox()
        async with asyncio.timeout(CONNECT_TIMEOUT_S + TICKET_WAIT_S + CLOSE_TIMEOUT_S):
            async with self.session(self.configuration(), inbox) as protocol:
                assert isinstance(protocol, PinnedServerProtocol)
                await protocol.verified
                ticket = await inbox.get()
        samples: list[float] = []
        early_data_accepted = 0
        resumed = 0
        for _ in range(count):
            inbox = TicketInbox()
            start = time.perf_counter()
            async with asyncio.timeout(CONNECT_TIMEOUT_S + TICKET_WAIT_S + CLOSE_TIMEOUT_S):
                async with self.session(self.configuration(ticket), inbox, wait_connected=False) as protocol:
                    assert isinstance(protocol, PinnedServerProtocol)
                    reader, writer = await protocol.create_stream()
                    writer.write(ECHO_TAG + message)  # sent as 0-RTT data
                    await reader.readexactly(ECHO_MESSAGE_SIZE)
                    handshake = await protocol.verified
                    samples.append((time.perf_counter() - start) * 1e3)
                    early_data_accepted += handshake.early_data_accepted
                    resumed += handshake.session_resumed
                    ticket = await inbox.get()
        return samples, {
            "mode": "TLS 1.3 session ticket (PSK) with 0-RTT echo request",
            "session_resumed": f"{resumed}/{count}",
            "zero_rtt_accepted": f"{early_data_accepted}/{count}",
        }

    async def rtt(self, count: int) -> list[float]:
        """``count`` 64-byte echo round trips on one stream."""
        message = bytes(ECHO_MESSAGE_SIZE)
        samples: list[float] = []
        async with self.session(self.configuration()) as protocol:
            assert isinstance(protocol, PinnedServerProtocol)
            await protocol.verified
            reader, writer = await protocol.create_stream()
            writer.write(ECHO_TAG)
            for index in range(RTT_WARMUP + count):
                start = time.perf_counter()
                writer.write(message)
                async with asyncio.timeout(ECHO_TIMEOUT_S):
                    await reader.readexactly(ECHO_MESSAGE_SIZE)
                if index >= RTT_WARMUP:
                    samples.append((time.perf_counter() - start) * 1e3)
            writer.write_eof()
        return samples

    async def uploads(self, payload: Payload, count: int) -> list[UploadOutcome]:
        """``count`` uploads of the payload, each on a new stream of one connection."""
        outcomes: list[UploadOutcome] = []
        async with self.session(self.configuration()) as protocol:
            assert isinstance(protocol, PinnedServerProtocol)
            await protocol.verified
            for _ in range(count):
                reader, writer = await protocol.create_stream()
                start = time.perf_counter()
                try:
                    async with asyncio.timeout(upload_timeout_s(len(payload))):
                        writer.write(SINK_TAG)
                        writer.write(payload.data)
                        writer.write_eof()
                        reply = await reader.readexactly(SINK_REPLY_SIZE)
                    error = payload.check(reply)
                except (TimeoutError, ConnectionError, asyncio.IncompleteReadError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                outcomes.append(UploadOutcome(time.perf_counter() - start, error))
        return outcomes

    async def wrong_key_refused(self) -> dict[str, Any]:
        """Connect with a key the server does not accept; the echo must fail."""
        impostor = Identity.from_seed(bytes(range(32)))
        close_reason: str | None = None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S + ECHO_TIMEOUT_S):
                async with self.session(self.configuration(identity=impostor)) as protocol:
                    assert isinstance(protocol, PinnedServerProtocol)
                    reader, writer = await protocol.create_stream()
                    writer.write(ECHO_TAG + bytes(ECHO_MESSAGE_SIZE))
                    try:
                        await reader.readexactly(ECHO_MESSAGE_SIZE)
                    finally:
                        close_reason = protocol.close_reason
        except asyncio.IncompleteReadError:
            return {"wrong_client_key_refused": True, "detail": f"closed by server: {close_reason}"}
        except (TimeoutError, ConnectionError) as exc:
            return {"wrong_client_key_refused": True, "detail": f"{type(exc).__name__}: {exc}"}
        return {"wrong_client_key_refused": False, "detail": "echo succeeded with an unknown client key"}


@dataclass(slots=True)
class TicketInbox:
    """Collects the session tickets one connection receives."""

    tickets: asyncio.Queue[SessionTicket] = field(default_factory=asyncio.Queue)

    def put(self, ticket: SessionTicket) -> None:
        """``session_ticket_handler`` for ``connect()``."""
        self.tickets.put_nowait(ticket)

    async def get(self) -> SessionTicket:
        """The next ticket, waiting at most ``TICKET_WAIT_S``."""
        async with asyncio.timeout(TICKET_WAIT_S):
            return await self.tickets.get()


async def run_client_async(options: ClientOptions) -> ClientReport:
    """All measurements, in order: connect, reconnect, RTT, throughput, auth check."""
    client = Client(options)
    report = ClientReport(
        stack=STACK,
        transport="QUIC v1 (aioquic), TLS 1.3 mutual auth with self-signed Ed25519 certificates, keys pinned",
        versions=package_versions("aioquic", "cryptography"),
    )
    await client.connect_once()  # warm-up: imports, first-use caches
    connects = [await client.connect_once() for _ in range(options.connects)]
    report.connect_ms = summarize([sample[0] for sample in connects])
    report.connect_first_echo_ms = summarize([sample[1] for sample in connects])
    reconnect_samples, report.reconnect = await client.reconnects(options.connects)
    report.reconnect_ms = summarize(reconnect_samples)
    report.rtt_ms = summarize(await client.rtt(options.rtt_count))
    payload = Payload(options.nbytes)
    report.throughput_mb_s, report.throughput = summarize_uploads(
        await client.uploads(payload, options.uploads), options.nbytes
    )
    if options.auth_check:
        report.auth = await client.wrong_key_refused()
    else:
        report.auth = {"skipped": AUTH_CHECK_SKIPPED}
    report.notes.append(
        "server requests client certificates via the internal tls._request_client_certificate flag and "
        "turns it off when it accepts a session ticket (aioquic 1.7.2 otherwise breaks resumption)"
    )
    report.notes.append("no Retry (address validation) on the server, as aioquic ships")
    return report


def client_main(options: ClientOptions) -> ClientReport:
    """Entry point of ``client``."""
    return asyncio.run(run_client_async(options))


def main() -> None:
    """Command line entry point."""
    run_stack_cli(STACK, serve_main, client_main)


if __name__ == "__main__":
    main()
