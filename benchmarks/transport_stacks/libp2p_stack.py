"""py-libp2p (``libp2p`` on PyPI), over QUIC by default or TCP + Noise + yamux with ``--transport tcp``.

Theory of operation
-------------------
A libp2p host's identity is its Ed25519 key, as a peer id. Both transports authenticate both
sides in the handshake: QUIC with libp2p-TLS (a certificate carrying the host key's signature,
checked by py-libp2p on aioquic, client certificate requested through the same internal aioquic
flag the aioquic stack uses), TCP with Noise XX. A dial names the expected peer id in its
``/p2p/`` multiaddr and fails on a mismatch. The server adds authorisation: its handlers reset
any stream from a peer id it does not accept and close that peer's connection. The TCP host is
given Noise as its only security transport (py-libp2p's default list also offers plaintext).

The services are libp2p protocols, ``/auralink-bench/echo/1.0.0`` and
``/auralink-bench/sink/1.0.0``, so every new stream pays multistream-select, as a libp2p
application would.

The 251 ms connect. ``Swarm.dial_peer`` runs a Happy Eyeballs loop that, after starting the dial
of each address, waits up to 250 ms for that dial to *fail* before going on; it only leaves
early once it holds ``max_connections_per_peer`` connections, and that limit defaults to 3. A
successful single-address dial thus still waits the full 250 ms. Setting
``max_connections_per_peer=1`` (on ``QUICTransportConfig`` for QUIC, on ``ConnectionConfig`` for
TCP) makes the first success cancel the wait. ``connect_ms`` uses that setting;
``extra.connect_default_config_ms`` measures a few dials with the defaults for comparison.

py-libp2p has no session resumption, so ``reconnect_ms`` is null.

A py-libp2p 0.8.1 QUIC defect shapes the server: after a client disconnects, the server's swarm
still lists the connection, and once a peer has 8 of them the resource manager refuses it
("Established per peer limit exceeded: 8 >= 8"). The server therefore lifts that limit; the
stale connections stay, and show in the server's RSS after the run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import Ed25519PublicKey, create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.config import ConnectionConfig
from libp2p.network.stream.exceptions import StreamEOF, StreamError
from libp2p.network.stream.net_stream import NetStream
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.rcmgr import new_resource_manager
from libp2p.rcmgr.connection_limits import ConnectionLimits
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.transport.quic.config import QUICTransportConfig

from benchmarks.transport_stacks._common import (
    AUTH_CHECK_SKIPPED,
    CLOSE_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    ECHO_MESSAGE_SIZE,
    ECHO_TIMEOUT_S,
    LOOPBACK,
    SINK_REPLY_SIZE,
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

STACK = "libp2p"
ECHO_PROTOCOL = TProtocol("/auralink-bench/echo/1.0.0")
SINK_PROTOCOL = TProtocol("/auralink-bench/sink/1.0.0")
READ_CHUNK = 64 * 1024
"""Largest read the server asks for (py-libp2p's QUIC write chunk)."""
WRITE_CHUNK = 64 * 1024
"""Bytes per ``write`` on uploads."""
RTT_WARMUP = 20
"""Echo round trips done before the measured ones."""
SERVER_PER_PEER_LIMIT = 10_000
"""Established connections per peer the server tolerates (py-libp2p's default is 8)."""
DEFAULT_CONFIG_CONNECTS = 5
"""Dials measured with py-libp2p's default configuration (each costs about 250 ms)."""

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Stack options: which libp2p transport to run."""
    parser.add_argument("--transport", choices=("quic", "tcp"), default="quic")


def listen_address(transport: str) -> multiaddr.Multiaddr:
    """Loopback, port chosen by the kernel."""
    if transport == "quic":
        return multiaddr.Multiaddr(f"/ip4/{LOOPBACK}/udp/0/quic-v1")
    return multiaddr.Multiaddr(f"/ip4/{LOOPBACK}/tcp/0")


def make_host(seed: bytes, transport: str, *, tuned: bool = True, server: bool = False) -> IHost:
    """A host with ``seed``'s Ed25519 identity.

    ``tuned`` avoids the 250 ms dial wait. ``server`` lifts the resource manager's limit of 8
    established connections per peer, which py-libp2p's QUIC server reaches because it keeps
    connections its client has closed (see the module docstring).
    """
    key_pair = create_new_key_pair(seed)
    resource_manager = (
        new_resource_manager(connection_limits=ConnectionLimits(max_established_per_peer=SERVER_PER_PEER_LIMIT))
        if server
        else None
    )
    if transport == "quic":
        quic_config = QUICTransportConfig(max_connections_per_peer=1) if tuned else QUICTransportConfig()
        return new_host(
            key_pair=key_pair,
            listen_addrs=[listen_address(transport)],
            enable_quic=True,
            quic_transport_opt=quic_config,
            resource_manager=resource_manager,
        )
    noise = NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    return new_host(
        key_pair=key_pair,
        listen_addrs=[listen_address(transport)],
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_preference="YAMUX",
        connection_config=ConnectionConfig(max_connections_per_peer=1) if tuned else None,
        resource_manager=resource_manager,
    )


def peer_id_of(public_key: bytes) -> ID:
    """The libp2p peer id of a raw Ed25519 public key."""
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key))


async def read_exactly(stream: INetStream, size: int) -> bytes:
    """Read ``size`` bytes or raise ``StreamEOF``."""
    buffer = bytearray()
    while len(buffer) < size:
        data = await stream.read(size - len(buffer))
        if not data:
            raise StreamEOF(f"stream ended after {len(buffer)} of {size} bytes")
        buffer += data
    return bytes(buffer)


async def read_some(stream: INetStream) -> bytes | None:
    """One read; None at end of stream (py-libp2p signals it by ``b""`` or ``StreamEOF``)."""
    try:
        data = await stream.read(READ_CHUNK)
    except StreamEOF:
        return None
    return data or None


# -- server -------------------------------------------------------------------------------------

Handler = Callable[[INetStream], Awaitable[None]]


def authorised(identity: Identity, serve_stream: Handler) -> Handler:
    """Wrap a protocol handler: refuse streams from peers ``identity`` does not accept."""
    expected = peer_id_of(identity.peer_public_key) if identity.peer_public_key is not None else None

    async def handler(stream: INetStream) -> None:
        try:
            if expected is not None and stream.muxed_conn.peer_id != expected:
                await stream.reset()
                await stream.muxed_conn.close()
                return
            await serve_stream(stream)
        except StreamError as exc:
            logger.debug("stream ended: %r", exc)

    return handler


async def serve_echo(stream: INetStream) -> None:
    """Write back whatever arrives."""
    while (data := await read_some(stream)) is not None:
        await stream.write(data)
    await stream.close()


async def serve_sink(stream: INetStream) -> None:
    """Count and hash until end of stream, then confirm."""
    count = 0
    hasher = hashlib.sha256()
    while (data := await read_some(stream)) is not None:
        count += len(data)
        hasher.update(data)
    await stream.write(encode_sink_reply(count, hasher.digest()))
    await stream.close()


async def serve_async(options: ServerOptions) -> None:
    """Serve until stdin closes or a stop signal arrives."""
    transport = options.extra["transport"]
    stop = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def stop_from_thread() -> None:
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(stop.set, trio_token=token)

    install_stop_triggers(stop_from_thread)
    host = make_host(options.identity.seed, transport, server=True)
    host.set_stream_handler(ECHO_PROTOCOL, authorised(options.identity, serve_echo))
    host.set_stream_handler(SINK_PROTOCOL, authorised(options.identity, serve_sink))
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with host.run(listen_addrs=[listen_address(transport)]), trio.open_nursery() as nursery:
            nursery.start_soon(partial(set_on_signal, signals, stop))
            address = host.get_addrs()[0]
            port = int(address.value_for_protocol("udp" if transport == "quic" else "tcp"))
            ServerInfo(
                stack=f"{STACK}-{transport}",
                host=LOOPBACK,
                port=port,
                public_key_hex=options.identity.public_key.hex(),
                pid=os.getpid(),
                address={"multiaddr": str(address), "peer_id": str(host.get_id()), "transport": transport},
            ).announce(options.port_file)
            await stop.wait()
            nursery.cancel_scope.cancel()


async def set_on_signal(signals: Any, stop: trio.Event) -> None:
    """Set ``stop`` on the first stop signal."""
    async for _ in signals:
        stop.set()
        return


def serve_main(options: ServerOptions) -> None:
    """Entry point of ``server``."""
    trio.run(serve_async, options)


# -- client -------------------------------------------------------------------------------------


class Client:
    """Runs the measurements from one host (plus short-lived hosts for the side checks)."""

    def __init__(self, options: ClientOptions, host: IHost) -> None:
        self.options = options
        self.host = host
        self.transport: str = options.extra["transport"]
        self.server = info_from_p2p_addr(multiaddr.Multiaddr(options.server.address["multiaddr"]))
        if self.server.peer_id != peer_id_of(options.server_key()):
            raise SystemExit("server multiaddr names a peer id that is not the pinned server key")

    async def dial(self, host: IHost) -> tuple[float, float]:
        """Connect, echo once, disconnect: (ms to verified and usable, ms to first echo)."""
        message = bytes(ECHO_MESSAGE_SIZE)
        start = time.perf_counter()
        with trio.fail_after(CONNECT_TIMEOUT_S):
            await host.connect(PeerInfo(self.server.peer_id, self.server.addrs))
        if not host.get_network().connections.get(self.server.peer_id):
            raise ConnectionError("connect returned without a connection")
        connected = time.perf_counter()
        with trio.fail_after(ECHO_TIMEOUT_S):
            stream = await host.new_stream(self.server.peer_id, [ECHO_PROTOCOL])
            await stream.write(message)
            await read_exactly(stream, ECHO_MESSAGE_SIZE)
        echoed = time.perf_counter()
        with trio.fail_after(CLOSE_TIMEOUT_S):
            await stream.close()
            await host.disconnect(self.server.peer_id)
        return (connected - start) * 1e3, (echoed - start) * 1e3

    async def connects(self, count: int) -> list[tuple[float, float]]:
        """``count`` fresh connections from the tuned host."""
        return [await self.dial(self.host) for _ in range(count)]

    async def default_config_connects(self, count: int) -> list[float]:
        """``count`` fresh connections from a host with py-libp2p's default configuration."""
        host = make_host(self.options.identity.seed, self.transport, tuned=False)
        async with host.run(listen_addrs=[listen_address(self.transport)]):
            await self.dial(host)  # warm-up
            return [(await self.dial(host))[0] for _ in range(count)]

    async def rtt(self, count: int) -> list[float]:
        """``count`` 64-byte echo round trips on one stream."""
        message = bytes(ECHO_MESSAGE_SIZE)
        with trio.fail_after(CONNECT_TIMEOUT_S):
            await self.host.connect(PeerInfo(self.server.peer_id, self.server.addrs))
            stream = await self.host.new_stream(self.server.peer_id, [ECHO_PROTOCOL])
        samples: list[float] = []
        for index in range(RTT_WARMUP + count):
            start = time.perf_counter()
            with trio.fail_after(ECHO_TIMEOUT_S):
                await stream.write(message)
                await read_exactly(stream, ECHO_MESSAGE_SIZE)
            if index >= RTT_WARMUP:
                samples.append((time.perf_counter() - start) * 1e3)
        await stream.close()
        return samples

    async def uploads(self, payload: Payload, count: int) -> list[UploadOutcome]:
        """``count`` uploads of the payload, each on a new stream of one connection."""
        chunks = [bytes(chunk) for chunk in payload.chunks(WRITE_CHUNK)]
        outcomes: list[UploadOutcome] = []
        for _ in range(count):
            start = time.perf_counter()
            try:
                with trio.fail_after(upload_timeout_s(len(payload))):
                    await self.host.connect(PeerInfo(self.server.peer_id, self.server.addrs))
                    start = time.perf_counter()
                    stream = await self.host.new_stream(self.server.peer_id, [SINK_PROTOCOL])
                    assert isinstance(stream, NetStream)  # INetStream lacks close_write()
                    for chunk in chunks:
                        await stream.write(chunk)
                    await stream.close_write()
                    error = payload.check(await read_exactly(stream, SINK_REPLY_SIZE))
            except (trio.TooSlowError, BaseLibp2pError, ConnectionError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            outcomes.append(UploadOutcome(time.perf_counter() - start, error))
        return outcomes

    async def wrong_key_refused(self) -> dict[str, Any]:
        """Dial from a host whose key the server does not accept; the echo must fail."""
        impostor = make_host(bytes(range(32)), self.transport)
        failures: list[BaseException] = []
        try:
            async with impostor.run(listen_addrs=[listen_address(self.transport)]):
                await self.dial(impostor)
        except* (trio.TooSlowError, BaseLibp2pError, ConnectionError) as group:  # host.run() groups errors
            failures = leaves(group)
        if failures:
            detail = "; ".join(f"{type(exc).__name__}: {exc}" for exc in failures)
            return {"wrong_client_key_refused": True, "detail": detail}
        return {"wrong_client_key_refused": False, "detail": "echo succeeded with an unknown client key"}


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in a (possibly nested) exception group."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


async def run_client_async(options: ClientOptions) -> ClientReport:
    """All measurements, in order: connect, default-config connect, RTT, throughput, auth check."""
    transport: str = options.extra["transport"]
    report = ClientReport(
        stack=f"{STACK}-{transport}",
        transport=(
            "QUIC v1 (py-libp2p on aioquic), libp2p-TLS mutual auth, peer ids pinned"
            if transport == "quic"
            else "TCP + Noise XX + yamux (py-libp2p), peer ids pinned"
        ),
        versions=package_versions("libp2p", "aioquic", "trio"),
    )
    host = make_host(options.identity.seed, transport)
    async with host.run(listen_addrs=[listen_address(transport)]):
        client = Client(options, host)
        await client.connects(1)  # warm-up
        samples = await client.connects(options.connects)
        report.connect_ms = summarize([sample[0] for sample in samples])
        report.connect_first_echo_ms = summarize([sample[1] for sample in samples])
        report.extra["connect_default_config_ms"] = summarize(
            await client.default_config_connects(min(options.connects, DEFAULT_CONFIG_CONNECTS))
        )
        report.rtt_ms = summarize(await client.rtt(options.rtt_count))
        payload = Payload(options.nbytes)
        report.throughput_mb_s, report.throughput = summarize_uploads(
            await client.uploads(payload, options.uploads), options.nbytes
        )
        report.auth = await client.wrong_key_refused() if options.auth_check else {"skipped": AUTH_CHECK_SKIPPED}
    report.reconnect = {"mode": "unsupported: py-libp2p has no session resumption"}
    report.notes.append(
        "tuned config: max_connections_per_peer=1, which ends the 250 ms Happy Eyeballs wait after the "
        "first successful dial; extra.connect_default_config_ms is the shipped default"
    )
    report.notes.append("each stream pays multistream-select protocol negotiation")
    return report


def client_main(options: ClientOptions) -> ClientReport:
    """Entry point of ``client``."""
    return trio.run(run_client_async, options)


def main() -> None:
    """Command line entry point."""
    run_stack_cli(STACK, serve_main, client_main, add_arguments)


if __name__ == "__main__":
    main()
