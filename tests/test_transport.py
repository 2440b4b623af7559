"""The QUIC endpoint on loopback: mutual authentication, stream routing, backpressure, bad input."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import ssl
from collections.abc import AsyncIterator

import pytest
from aioquic.asyncio import connect as aioquic_connect
from aioquic.quic.configuration import QuicConfiguration

from auralink.errors import (
    ConnectionBroken,
    ConnectionClosed,
    ConnectionError_,
    DialFailed,
    LocalProtocolError,
    PeerIdentityMismatch,
    ProtocolNotSupported,
    StreamReset,
)
from auralink.identity import Identity
from auralink.wire import Address
from auralink_node.transport.connection import PeerConnection
from auralink_node.transport.endpoint import MESH_ALPN, Endpoint, ProtocolRouter, TransportConfig
from auralink_node.transport.streams import ErrorCode, MeshStream
from auralink_node.transport.tls import make_certificate

LOOPBACK = [Address("127.0.0.1", 0)]
ECHO = "test/echo/1"


async def echo(stream: MeshStream) -> None:
    while chunk := await stream.read():
        await stream.send(chunk)
    stream.write_eof()


@pytest.fixture
def ids() -> list[Identity]:
    return [Identity.from_seed(bytes([i]) * 32) for i in range(1, 5)]


@pytest.fixture
async def server(ids: list[Identity]) -> AsyncIterator[Endpoint]:
    router = ProtocolRouter()
    router.register(ECHO, echo)
    async with Endpoint(ids[0], LOOPBACK, router=router) as endpoint:
        yield endpoint


@pytest.fixture
async def client(ids: list[Identity]) -> AsyncIterator[Endpoint]:
    async with Endpoint(ids[1], LOOPBACK) as endpoint:
        yield endpoint


async def test_both_sides_learn_the_proven_identity(server: Endpoint, client: Endpoint, ids: list[Identity]) -> None:
    accepted: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    server.on_connection_ready(lambda conn: accepted.done() or accepted.set_result(conn.peer))
    conn = await client.connect(ids[0].aura_id, server.local_addresses)
    assert conn.peer == ids[0].aura_id
    assert conn.alpn == MESH_ALPN
    assert await accepted == ids[1].aura_id


async def test_dialling_the_wrong_key_is_refused(server: Endpoint, client: Endpoint, ids: list[Identity]) -> None:
    with pytest.raises(PeerIdentityMismatch, match="identity mismatch") as info:
        await client.connect(ids[2].aura_id, server.local_addresses)
    assert info.value.expected == str(ids[2].aura_id)
    assert info.value.actual == str(ids[0].aura_id)
    assert client.connection_to(ids[2].aura_id) is None


async def test_a_client_without_a_certificate_is_refused(server: Endpoint) -> None:
    config = QuicConfiguration(is_client=True, alpn_protocols=[MESH_ALPN], verify_mode=ssl.CERT_NONE)
    address = server.local_addresses[0]
    with pytest.raises(ConnectionError):
        async with aioquic_connect(address.host, address.port, configuration=config) as proto:
            await proto.ping()
            await proto.wait_closed()
            raise ConnectionError("closed by the server")
    assert all(conn.peer is not None for conn in server.connections())


async def dial_with_unknown_alpn(identity: Identity, address: Address) -> None:
    """A certified client that asks for ALPN ``h3``, which no AuraLink node serves."""
    certified = make_certificate(identity, 1_700_000_000)
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=["h3"],
        verify_mode=ssl.CERT_NONE,
        certificate=certified.certificate,
        private_key=certified.private_key,
    )
    async with aioquic_connect(address.host, address.port, configuration=config, wait_connected=True):
        pass


async def test_an_unknown_alpn_is_refused_in_the_handshake(server: Endpoint, ids: list[Identity]) -> None:
    with pytest.raises(ConnectionError):
        await dial_with_unknown_alpn(ids[3], server.local_addresses[0])


async def test_streams_echo_data_intact(server: Endpoint, client: Endpoint, ids: list[Identity]) -> None:
    conn = await client.connect(ids[0].aura_id, server.local_addresses)
    payload = random.Random(7).randbytes(3 << 20)
    async with await conn.open_stream(ECHO) as stream:

        async def write() -> None:
            for offset in range(0, len(payload), 50_000):
                await stream.send(payload[offset : offset + 50_000])
            stream.write_eof()

        writer = asyncio.create_task(write())
        received = await stream.read_all(len(payload))
        await writer
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


async def test_connections_are_reused_per_peer(server: Endpoint, client: Endpoint, ids: list[Identity]) -> None:
    first, second = await asyncio.gather(
        client.connect(ids[0].aura_id, server.local_addresses),
        client.connect(ids[0].aura_id, server.local_addresses),
    )
    assert first is second
    assert await client.connect(ids[0].aura_id, []) is first
    assert len(server.connections()) == 1


async def test_unknown_stream_protocol_is_refused(server: Endpoint, client: Endpoint, ids: list[Identity]) -> None:
    conn = await client.connect(ids[0].aura_id, server.local_addresses)
    stream = await conn.open_stream("test/nobody/1")
    with pytest.raises(ProtocolNotSupported) as info:
        await stream.read()
    assert info.value.protocol == "test/nobody/1"
    async with await conn.open_stream(ECHO) as still_fine:
        await still_fine.send(b"ping")
        assert await still_fine.readexactly(4) == b"ping"


async def test_a_failing_handler_resets_its_stream_and_the_node_keeps_serving(
    server: Endpoint, client: Endpoint, ids: list[Identity]
) -> None:
    async def broken(stream: MeshStream) -> None:
        raise RuntimeError("bug in an app handler")

    server.router.register("test/broken/1", broken)
    conn = await client.connect(ids[0].aura_id, server.local_addresses)
    stream = await conn.open_stream("test/broken/1")
    with pytest.raises(StreamReset):
        await stream.read()
    async with await conn.open_stream(ECHO) as again:
        await again.send(b"x")
        assert await again.readexactly(1) == b"x"


async def test_a_slow_reader_holds_back_a_fast_writer(ids: list[Identity]) -> None:
    """The writer stops after about one receive window plus its write buffer, then resumes."""
    config = TransportConfig(stream_window=256 << 10, write_high_water=128 << 10, write_low_water=32 << 10)
    router = ProtocolRouter()
    start_reading = asyncio.Event()
    received = bytearray()

    async def lazy(stream: MeshStream) -> None:
        await start_reading.wait()
        while chunk := await stream.read():
            received.extend(chunk)

    router.register("test/lazy/1", lazy)
    total = 8 << 20
    sent = 0
    async with (
        Endpoint(ids[0], LOOPBACK, router=router, config=config) as server,
        Endpoint(ids[1], LOOPBACK, config=config) as client,
    ):
        conn = await client.connect(ids[0].aura_id, server.local_addresses)
        stream = await conn.open_stream("test/lazy/1")

        async def write() -> None:
            nonlocal sent
            chunk = bytes(16 << 10)
            while sent < total:
                await stream.send(chunk)
                sent += len(chunk)
            await stream.aclose()

        writer = asyncio.create_task(write())
        done, _ = await asyncio.wait([writer], timeout=1.0)  # an upper bound, not a synchronisation
        assert not done, "the writer must block while nobody reads"
        bound = config.stream_window + config.write_high_water + (16 << 10) + 4096
        assert sent <= bound
        assert conn.unsent_bytes(stream.stream_id) <= config.write_high_water + (16 << 10)
        start_reading.set()
        await asyncio.wait_for(writer, timeout=60)
    assert len(received) == total


async def test_closing_a_connection_fails_its_streams_as_closed(
    server: Endpoint, client: Endpoint, ids: list[Identity]
) -> None:
    conn = await client.connect(ids[0].aura_id, server.local_addresses)
    stream = await conn.open_stream(ECHO)
    conn.close()
    with pytest.raises(ConnectionClosed):
        await stream.read()
    with pytest.raises(ConnectionClosed):
        stream.write(b"late")
    fresh = await client.connect(ids[0].aura_id, server.local_addresses)
    assert fresh is not conn


async def test_dial_to_a_silent_address_fails_with_reasons(ids: list[Identity]) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        config = TransportConfig(connect_timeout=0.3, handshake_timeout=0.3)
        async with Endpoint(ids[1], LOOPBACK, config=config) as client:
            with pytest.raises(DialFailed) as info:
                await client.connect(ids[0].aura_id, [Address(*silent.getsockname())])
            assert len(info.value.reasons) == 1
            with pytest.raises(DialFailed, match="no known address"):
                await client.connect(ids[0].aura_id, [])
            with pytest.raises(LocalProtocolError):
                await client.connect(ids[1].aura_id, [Address(*silent.getsockname())])
    finally:
        silent.close()


def _garbage(rng: random.Random, count: int) -> list[bytes]:
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            out.append(rng.randbytes(rng.randint(0, 1500)))
        elif kind == 1:  # looks like a full-size QUIC v1 Initial from a new client
            dcid, scid = rng.randbytes(8), rng.randbytes(8)
            header = bytes([0xC3]) + (1).to_bytes(4, "big") + bytes([8]) + dcid + bytes([8]) + scid
            out.append(header + b"\x00" + rng.randbytes(1200))
        elif kind == 2:  # short header packets for unknown connections
            out.append(bytes([0x40 | rng.randint(0, 0x3F)]) + rng.randbytes(rng.randint(20, 1200)))
        else:  # unknown QUIC version: answered with version negotiation
            out.append(
                bytes([0xC0]) + rng.randbytes(4) + bytes([8]) + rng.randbytes(8) + bytes([8]) + rng.randbytes(1190)
            )
    return out


async def test_garbage_datagrams_leave_the_endpoint_serving(
    server: Endpoint, client: Endpoint, ids: list[Identity]
) -> None:
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.setblocking(False)
    target = server.local_addresses[0].as_tuple()
    loop = asyncio.get_running_loop()
    try:
        for index, datagram in enumerate(_garbage(random.Random(1), 10_000)):
            await loop.sock_sendto(raw, datagram, target)
            if index % 200 == 0:
                await asyncio.sleep(0)  # let the endpoint drain its socket: loopback drops what overflows
    finally:
        raw.close()
    # Spoofed Initials from one source cannot pile up connection state.
    assert len(server.connections()) <= server.config.max_handshakes_per_source
    conn = await client.connect(ids[0].aura_id, server.local_addresses)
    async with await conn.open_stream(ECHO) as stream:
        await stream.send(b"still here")
        assert await stream.readexactly(10) == b"still here"


async def test_retry_is_demanded_under_handshake_load(ids: list[Identity]) -> None:
    config = TransportConfig(retry_threshold=0)  # every new client must prove its address first
    router = ProtocolRouter()
    router.register(ECHO, echo)
    async with (
        Endpoint(ids[0], LOOPBACK, router=router, config=config) as server,
        Endpoint(ids[1], LOOPBACK) as client,
    ):
        conn = await client.connect(ids[0].aura_id, server.local_addresses)
        async with await conn.open_stream(ECHO) as stream:
            await stream.send(b"r")
            assert await stream.readexactly(1) == b"r"


async def test_the_peer_going_away_breaks_or_closes_streams(ids: list[Identity]) -> None:
    router = ProtocolRouter()
    hold = asyncio.Event()

    async def holder(stream: MeshStream) -> None:
        await hold.wait()

    router.register("test/hold/1", holder)
    async with Endpoint(ids[1], LOOPBACK) as client:
        async with Endpoint(ids[0], LOOPBACK, router=router) as server:
            conn = await client.connect(ids[0].aura_id, server.local_addresses)
            stream = await conn.open_stream("test/hold/1")
            stream.write(b"hello")
        # the server shut down: its SHUTDOWN close reaches us as a clean close
        with pytest.raises(ConnectionError_) as info:
            await stream.read()
        assert isinstance(info.value, ConnectionClosed | ConnectionBroken)


def test_protocol_names_are_validated() -> None:
    router = ProtocolRouter()
    for bad in (
        "echo",
        "a/b",
        "a/b/x",
        "a b/c/1",
        "a/b/1/2",
        "é/b/1",
        "x/" + "y" * 70 + "/1",
        "MyApp/Chat/1",
        "-a/b/1",
    ):
        with pytest.raises(LocalProtocolError):
            router.register(bad, echo)
    router.register("auralink/echo/1", echo)
    with pytest.raises(LocalProtocolError, match="already"):
        router.register("auralink/echo/1", echo)


async def test_keepalive_holds_an_idle_connection_open(ids: list[Identity]) -> None:
    kept = TransportConfig(idle_timeout=0.5, keepalive_interval=0.1)
    async with Endpoint(ids[0], LOOPBACK, config=kept) as server, Endpoint(ids[1], LOOPBACK, config=kept) as client:
        conn = await client.connect(ids[0].aura_id, server.local_addresses)
        done, _ = await asyncio.wait([asyncio.ensure_future(conn.wait_closed())], timeout=1.5)  # 3x the idle timeout
        assert not done and not conn.is_closed
        assert await client.connect(ids[0].aura_id, []) is conn  # still reused


async def test_an_idle_connection_without_keepalive_times_out(ids: list[Identity]) -> None:
    idle = TransportConfig(idle_timeout=0.3, keepalive_interval=60)
    async with Endpoint(ids[0], LOOPBACK, config=idle) as server, Endpoint(ids[1], LOOPBACK, config=idle) as client:
        conn = await client.connect(ids[0].aura_id, server.local_addresses)
        await asyncio.wait_for(conn.wait_closed(), timeout=5)
        assert client.connection_to(ids[0].aura_id) is None


async def test_reconnect_resumes_the_session_and_keeps_both_identities(
    server: Endpoint, client: Endpoint, ids: list[Identity]
) -> None:
    seen: list[object] = []
    server.on_connection_ready(lambda conn: seen.append((conn.peer, conn.session_resumed)))
    first = await client.connect(ids[0].aura_id, server.local_addresses)
    assert not first.session_resumed
    first.close()
    second = await client.connect(ids[0].aura_id, server.local_addresses)
    assert second.session_resumed and second.peer == ids[0].aura_id
    assert seen == [(ids[1].aura_id, False), (ids[1].aura_id, True)]
    async with await second.open_stream(ECHO) as stream:
        await stream.send(b"again")
        assert await stream.readexactly(5) == b"again"


async def test_a_ticket_the_server_forgot_falls_back_to_a_full_handshake(ids: list[Identity]) -> None:
    router = ProtocolRouter()
    router.register(ECHO, echo)
    async with Endpoint(ids[1], LOOPBACK) as client:
        async with Endpoint(ids[0], LOOPBACK, router=router) as server:
            address = server.local_addresses
            (await client.connect(ids[0].aura_id, address)).close()
        async with Endpoint(ids[0], address, router=router) as restarted:  # same key and port, no tickets
            conn = await client.connect(ids[0].aura_id, restarted.local_addresses)
            assert conn.peer == ids[0].aura_id and not conn.session_resumed


async def test_a_peer_that_breaks_a_protocol_loses_its_connection(
    server: Endpoint, client: Endpoint, ids: list[Identity]
) -> None:
    cut_off: list[str] = []
    server.on_protocol_violation(lambda conn, reason: cut_off.append(reason))
    conn = await client.connect(ids[0].aura_id, server.local_addresses)
    bogus = conn._quic.get_next_available_stream_id()
    conn.send_stream_data(bogus, b"\x07 this is no stream header", end_stream=False)
    await asyncio.wait_for(conn.wait_closed(), 10)
    assert cut_off and "stream header" in cut_off[0]
    fresh = await client.connect(ids[0].aura_id, server.local_addresses)  # others (and a new connection) are fine
    async with await fresh.open_stream(ECHO) as stream:
        await stream.send(b"ok")
        assert await stream.readexactly(2) == b"ok"


@pytest.mark.skipif(not socket.has_ipv6, reason="this Python has no IPv6 support")
async def test_ipv6_and_ipv4_listen_addresses_both_serve(ids: list[Identity]) -> None:
    router = ProtocolRouter()
    router.register(ECHO, echo)
    try:
        server = Endpoint(ids[0], [Address("127.0.0.1", 0), Address("::1", 0)], router=router)
        await server.__aenter__()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        v4, v6 = server.local_addresses
        assert (v4.version, v6.version) == (4, 6)
        async with Endpoint(ids[1], [Address("::1", 0)]) as client:
            conn = await client.connect(ids[0].aura_id, [v6])
            assert conn.remote == v6
            async with await conn.open_stream(ECHO) as stream:
                await stream.send(b"six")
                assert await stream.readexactly(3) == b"six"
            with pytest.raises(DialFailed, match="no IPv4 socket"):
                await client.connect(ids[2].aura_id, [v4])
    finally:
        await server.__aexit__(None, None, None)


# -- 0-RTT: a resumed session's first stream rides with the ClientHello --------------------------


def serve_recording(
    router: ProtocolRouter, protocol: str, seen: list[tuple[bool, object]], *, replay_safe: bool
) -> None:
    """Echo ``protocol``, noting for each stream whether the handshake was complete and who the peer was."""

    async def handler(stream: MeshStream) -> None:
        seen.append((stream.connection.is_ready, stream.peer))
        await echo(stream)

    router.register(protocol, handler, replay_safe=replay_safe)


def next_closed(endpoint: Endpoint) -> asyncio.Future[PeerConnection]:
    """Resolves with the next connection of ``endpoint`` that ends."""
    closed: asyncio.Future[PeerConnection] = asyncio.get_running_loop().create_future()

    def on_closed(conn: PeerConnection) -> None:
        if not closed.done():
            closed.set_result(conn)

    endpoint.on_connection_closed(on_closed)
    return closed


async def earn_ticket(client: Endpoint, server: Endpoint, ids: list[Identity]) -> None:
    """A full handshake that leaves the client a session ticket and the server its record of it."""
    closed = next_closed(server)
    conn = await client.connect(ids[0].aura_id, server.local_addresses)
    async with await conn.open_stream(ECHO) as stream:  # a round trip after the handshake brings the ticket
        await stream.send(b"hi")
        assert await stream.readexactly(2) == b"hi"
    conn.close()
    async with asyncio.timeout(10):
        await closed  # the server has forgotten the connection (and its connection IDs)


async def test_a_replay_safe_stream_in_0rtt_is_served_before_the_handshake_completes(
    server: Endpoint, client: Endpoint, ids: list[Identity]
) -> None:
    seen: list[tuple[bool, object]] = []
    serve_recording(server.router, "test/early/1", seen, replay_safe=True)
    await earn_ticket(client, server, ids)
    stream = await client.open_stream(ids[0].aura_id, server.local_addresses, "test/early/1")
    conn = stream.connection
    assert not conn.is_ready and stream.peer is None  # returned before the handshake
    stream.write(b"early")
    assert await stream.readexactly(5) == b"early"
    assert conn.is_ready and conn.session_resumed and conn.early_data_accepted
    assert conn.peer == ids[0].aura_id == stream.peer
    assert seen == [(False, ids[1].aura_id)]  # the handler ran before the client's Finished, knowing the client
    assert await client.connect(ids[0].aura_id, []) is conn  # and the connection is the peer's connection


async def test_0rtt_data_of_a_protocol_not_replay_safe_waits_for_the_handshake(
    server: Endpoint, client: Endpoint, ids: list[Identity]
) -> None:
    seen: list[tuple[bool, object]] = []
    serve_recording(server.router, "test/late/1", seen, replay_safe=False)
    await earn_ticket(client, server, ids)
    stream = await client.open_stream(ids[0].aura_id, server.local_addresses, "test/late/1")
    stream.write(b"late")
    assert await stream.readexactly(4) == b"late"
    assert stream.connection.early_data_accepted  # sent as 0-RTT data, but held by the server...
    assert seen == [(True, ids[1].aura_id)]  # ...until the handshake completed


async def test_a_replayed_0rtt_flight_reaches_only_replay_safe_handlers(ids: list[Identity]) -> None:
    router = ProtocolRouter()
    router.register(ECHO, echo)
    safe: list[tuple[bool, object]] = []
    unsafe: list[tuple[bool, object]] = []
    serve_recording(router, "test/safe/1", safe, replay_safe=True)
    serve_recording(router, "test/unsafe/1", unsafe, replay_safe=False)
    quick = TransportConfig(handshake_timeout=0.5)
    async with Endpoint(ids[0], LOOPBACK, router=router, config=quick) as server, Endpoint(ids[1], LOOPBACK) as client:
        for protocol, seen in (("test/safe/1", safe), ("test/unsafe/1", unsafe)):
            await earn_ticket(client, server, ids)
            sock = client._sockets[0]
            first_flight: list[bytes] = []
            real_sendto = sock.sendto

            def record(
                data: bytes, addr: Address, real_sendto: object = real_sendto, first_flight: list[bytes] = first_flight
            ) -> None:
                first_flight.append(data)
                real_sendto(data, addr)  # type: ignore[operator]

            sock.sendto = record  # type: ignore[method-assign]
            stream = await client.open_stream(ids[0].aura_id, server.local_addresses, protocol)
            stream.write(b"once")
            await asyncio.sleep(0)  # the ClientHello and the 0-RTT data leave at the end of this loop turn
            del sock.sendto
            assert await stream.readexactly(4) == b"once"
            assert len(seen) == 1
            flight = first_flight[:1]  # the datagram with the ClientHello and the 0-RTT packet
            closed = next_closed(server)
            stream.connection.close()
            async with asyncio.timeout(10):
                await closed
            # An eavesdropper replays the flight from elsewhere: the server decrypts the 0-RTT data
            # again, but the replay can never finish the handshake.
            replayed = next_closed(server)
            attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                attacker.sendto(flight[0], server.local_addresses[0].as_tuple())
                async with asyncio.timeout(10):
                    lost = await replayed  # the replay's handshake timed out
            finally:
                attacker.close()
            assert not lost.is_ready
        assert safe == [(False, ids[1].aura_id), (False, ids[1].aura_id)]  # replayable, as documented
        assert unsafe == [(True, ids[1].aura_id)]  # the replay never reached it


async def test_a_ticket_is_kept_only_for_a_client_the_application_accepted(
    server: Endpoint, client: Endpoint, ids: list[Identity]
) -> None:
    refuse = True

    def allow_list(conn: PeerConnection) -> None:
        if refuse:
            conn.abort(ErrorCode.IDENTITY_MISMATCH, "not on the allow list")

    server.on_connection_ready(allow_list)
    refused = await client.connect(ids[0].aura_id, server.local_addresses)
    await asyncio.wait_for(refused.wait_closed(), 10)
    assert not server._server_tickets
    refuse = False
    await earn_ticket(client, server, ids)
    assert len(server._server_tickets) == 1


async def test_a_resumed_0rtt_dial_to_another_key_fails_the_stream_and_forgets_the_ticket(ids: list[Identity]) -> None:
    router = ProtocolRouter()
    router.register(ECHO, echo)
    impostor_seen: list[tuple[bool, object]] = []
    async with Endpoint(ids[1], LOOPBACK) as client:
        async with Endpoint(ids[0], LOOPBACK, router=router) as server:
            address = server.local_addresses
            await earn_ticket(client, server, ids)
        impostor_router = ProtocolRouter()
        serve_recording(impostor_router, ECHO, impostor_seen, replay_safe=True)
        async with Endpoint(ids[2], address, router=impostor_router) as impostor:  # another key at the same address
            stream = await client.open_stream(ids[0].aura_id, impostor.local_addresses, ECHO)
            stream.write(b"secret")
            with pytest.raises(PeerIdentityMismatch):
                await stream.read()
            with pytest.raises(PeerIdentityMismatch):
                await client.connect(ids[0].aura_id, impostor.local_addresses)
    assert impostor_seen == []  # it could not read the 0-RTT data, and no stream reached it
    assert ids[0].aura_id not in client._client_tickets


async def test_0rtt_data_refused_by_a_restarted_server_is_sent_again(ids: list[Identity]) -> None:
    router = ProtocolRouter()
    router.register(ECHO, echo, replay_safe=True)
    async with Endpoint(ids[1], LOOPBACK) as client:
        async with Endpoint(ids[0], LOOPBACK, router=router) as server:
            address = server.local_addresses
            await earn_ticket(client, server, ids)
        async with Endpoint(ids[0], address, router=router) as restarted:  # same key and port, no tickets
            stream = await client.open_stream(ids[0].aura_id, restarted.local_addresses, ECHO)
            stream.write(b"again")
            async with asyncio.timeout(10):
                assert await stream.readexactly(5) == b"again"
            conn = stream.connection
            assert conn.peer == ids[0].aura_id and not conn.session_resumed and not conn.early_data_accepted


def test_replay_safety_is_part_of_a_registration() -> None:
    router = ProtocolRouter()
    router.register("test/a/1", echo, replay_safe=True)
    router.register("test/b/1", echo)
    assert router.is_replay_safe("test/a/1") and not router.is_replay_safe("test/b/1")
    assert not router.is_replay_safe("test/c/1")
    router.unregister("test/a/1")
    assert not router.is_replay_safe("test/a/1")


async def test_0rtt_data_is_sent_again_after_a_retry(ids: list[Identity]) -> None:
    router = ProtocolRouter()
    router.register(ECHO, echo, replay_safe=True)
    every_client_retries = TransportConfig(retry_threshold=0)  # a server under handshake load
    async with (
        Endpoint(ids[0], LOOPBACK, router=router, config=every_client_retries) as server,
        Endpoint(ids[1], LOOPBACK) as client,
    ):
        await earn_ticket(client, server, ids)
        stream = await client.open_stream(ids[0].aura_id, server.local_addresses, ECHO)
        stream.write(b"retry")
        async with asyncio.timeout(10):  # the 0-RTT data went with the first ClientHello, which drew a Retry
            assert await stream.readexactly(5) == b"retry"
        assert stream.connection.session_resumed and stream.connection.peer == ids[0].aura_id


@pytest.mark.parametrize("first", [0, 1])
async def test_when_both_sides_dial_at_once_both_ends_use_the_connection_the_smaller_key_dialled(
    ids: list[Identity], first: int
) -> None:
    """Each end sees two connections, in either order; both pick one by the same rule, the other idles out."""
    config = TransportConfig(idle_timeout=1.0, keepalive_interval=0.25)
    routers = [ProtocolRouter(), ProtocolRouter()]
    for router in routers:
        router.register(ECHO, echo)
    async with (
        Endpoint(ids[0], LOOPBACK, router=routers[0], config=config) as a,
        Endpoint(ids[1], LOOPBACK, router=routers[1], config=config) as b,
    ):
        ends, second = (a, b), 1 - first
        await ends[first].connect(ids[second].aura_id, ends[second].local_addresses)
        # The other side dials too, as if it had not seen that connection yet (connect() would reuse it).
        address = ends[first].local_addresses[0]
        await ends[second]._handshake(ids[first].aura_id, address, ends[second]._socket_for(address))
        smaller = 0 if ids[0].aura_id.public_key < ids[1].aura_id.public_key else 1
        kept, dropped = [], []
        for i, end in enumerate(ends):
            by_dialler = {c.is_client: c for c in end.connections() if c.peer == ids[1 - i].aura_id}
            kept.append(by_dialler[i == smaller])  # ours if our key is the smaller, else the one the peer dialled
            dropped.append(by_dialler[i != smaller])
            assert end.connection_to(ids[1 - i].aura_id) is kept[-1]
        async with asyncio.timeout(10.0):  # the duplicate gets no keepalives: it idles out at both ends
            for conn in dropped:
                await conn.wait_closed()
        assert not kept[0].is_closed and not kept[1].is_closed  # kept alive meanwhile
        async with await kept[0].open_stream(ECHO) as stream:
            await stream.send(b"still here")
            stream.write_eof()
            assert await stream.read_all(100) == b"still here"
