"""AuraLink's own transport (``auralink_node.transport.Endpoint``) under the harness's contract.

The same services as every stack, as AuraLink stream protocols: ``bench/echo/1`` and
``bench/sink/1``. Both ends authenticate by their Ed25519 keys in TLS certificates, checked
against the AuraID on both sides; the server additionally refuses every client key but the one
in its identity file (an application-level allow-list, as the harness requires of all stacks).

Reconnects resume the TLS session (no certificates) through ``Endpoint.open_stream``: the echo
stream's header and first message ride in 0-RTT packets with the ClientHello, and the server,
which registers the echo protocol as replay-safe (it is idempotent), answers before the
handshake completes; the client reads the answer only once the server's key is checked. The
sink protocol is not replay-safe: its 0-RTT data would wait for the handshake.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

from auralink.errors import AuralinkError
from auralink.identity import AuraID
from auralink.identity import Identity as AuraIdentity
from auralink.wire import Address
from auralink_node.transport import Endpoint, MeshStream, PeerConnection, ProtocolRouter
from auralink_node.transport.streams import ErrorCode
from benchmarks.transport_stacks._common import (
    AUTH_CHECK_SKIPPED,
    CONNECT_TIMEOUT_S,
    ECHO_MESSAGE_SIZE,
    ECHO_TIMEOUT_S,
    LOOPBACK,
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

STACK = "auralink"
ECHO = "bench/echo/1"
SINK = "bench/sink/1"
RTT_WARMUP = 20
_CHUNK = 256 * 1024


def _aura(identity: Identity) -> AuraIdentity:
    return AuraIdentity.from_seed(identity.seed)


# -- server -------------------------------------------------------------------------------------


async def _echo(stream: MeshStream) -> None:
    while chunk := await stream.read():
        await stream.send(chunk)
    stream.write_eof()


async def _sink(stream: MeshStream) -> None:
    digest = hashlib.sha256()
    count = 0
    while chunk := await stream.read(1 << 20):
        digest.update(chunk)
        count += len(chunk)
    await stream.send(encode_sink_reply(count, digest.digest()))
    stream.write_eof()


async def serve_async(options: ServerOptions) -> None:
    """Serve until stdin closes or a stop signal arrives."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    install_stop_triggers(lambda: loop.call_soon_threadsafe(stop.set))
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    router = ProtocolRouter()
    router.register(ECHO, _echo, replay_safe=True)
    router.register(SINK, _sink)

    def allow_list(conn: PeerConnection) -> None:
        assert conn.peer is not None
        if not options.identity.accepts(conn.peer.public_key):
            conn.abort(ErrorCode.IDENTITY_MISMATCH, "client key not allowed")

    async with Endpoint(_aura(options.identity), [Address(LOOPBACK, 0)], router=router) as endpoint:
        endpoint.on_connection_ready(allow_list)
        bound = endpoint.local_addresses[0]
        ServerInfo(
            stack=STACK,
            host=bound.host,
            port=bound.port,
            public_key_hex=options.identity.public_key.hex(),
            pid=os.getpid(),
            address={"aura_id": str(endpoint.identity.aura_id)},
        ).announce(options.port_file)
        await stop.wait()


def serve_main(options: ServerOptions) -> None:
    """Entry point of ``server``."""
    asyncio.run(serve_async(options))


# -- client -------------------------------------------------------------------------------------


class Client:
    """Runs the measurements over one client endpoint, as an application would."""

    def __init__(self, options: ClientOptions, endpoint: Endpoint) -> None:
        self.options = options
        self.endpoint = endpoint
        self.server = AuraID(options.server_key())
        self.address = [Address(options.server.host, options.server.port)]
        self._ready_at: dict[PeerConnection, float] = {}  # when each connection's handshake was verified
        endpoint.on_connection_ready(lambda conn: self._ready_at.__setitem__(conn, time.perf_counter()))

    async def _first_echo(self, conn: PeerConnection) -> None:
        stream = await conn.open_stream(ECHO)
        stream.write(bytes(ECHO_MESSAGE_SIZE))
        async with asyncio.timeout(ECHO_TIMEOUT_S):
            await stream.readexactly(ECHO_MESSAGE_SIZE)
        stream.write_eof()

    async def connect_once(self, *, resume: bool) -> tuple[float, float, bool, bool]:
        """One new connection: (ms to verified, ms to first echo, resumed?, 0-RTT accepted?)."""
        if not resume:
            self.endpoint._client_tickets.clear()  # a fresh connect must not resume
            start = time.perf_counter()
            async with asyncio.timeout(CONNECT_TIMEOUT_S + ECHO_TIMEOUT_S):
                conn = await self.endpoint.connect(self.server, self.address)
                connected = time.perf_counter()
                await self._first_echo(conn)
                echoed = time.perf_counter()
            conn.close()
            self._ready_at.pop(conn, None)
            return (connected - start) * 1e3, (echoed - start) * 1e3, conn.session_resumed, conn.early_data_accepted
        start = time.perf_counter()
        async with asyncio.timeout(CONNECT_TIMEOUT_S + ECHO_TIMEOUT_S):
            stream = await self.endpoint.open_stream(self.server, self.address, ECHO)  # 0-RTT
            stream.write(bytes(ECHO_MESSAGE_SIZE))
            conn = stream.connection
            await stream.readexactly(ECHO_MESSAGE_SIZE)  # delivered only once the server's key is checked
            echoed = time.perf_counter()
            await conn.wait_ready()  # done already
            connected = self._ready_at.pop(conn, echoed)
        stream.write_eof()
        conn.close()
        return (connected - start) * 1e3, (echoed - start) * 1e3, conn.session_resumed, conn.early_data_accepted

    async def rtt(self, count: int) -> list[float]:
        """``count`` 64-byte echo round trips on one stream."""
        conn = await self.endpoint.connect(self.server, self.address)
        stream = await conn.open_stream(ECHO)
        message = bytes(ECHO_MESSAGE_SIZE)
        samples: list[float] = []
        for index in range(RTT_WARMUP + count):
            start = time.perf_counter()
            stream.write(message)
            async with asyncio.timeout(ECHO_TIMEOUT_S):
                await stream.readexactly(ECHO_MESSAGE_SIZE)
            if index >= RTT_WARMUP:
                samples.append((time.perf_counter() - start) * 1e3)
        stream.write_eof()
        conn.close()
        return samples

    async def uploads(self, payload: Payload, count: int) -> list[UploadOutcome]:
        """``count`` uploads of the payload, each on a new stream of one connection."""
        conn = await self.endpoint.connect(self.server, self.address)
        outcomes: list[UploadOutcome] = []
        chunks = payload.chunks(_CHUNK)
        for _ in range(count):
            start = time.perf_counter()
            try:
                async with asyncio.timeout(upload_timeout_s(len(payload))):
                    stream = await conn.open_stream(SINK)
                    for chunk in chunks:
                        await stream.send(bytes(chunk))
                    stream.write_eof()
                    error = payload.check(await stream.readexactly(40))
            except (TimeoutError, AuralinkError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            outcomes.append(UploadOutcome(time.perf_counter() - start, error))
        conn.close()
        return outcomes


async def _wrong_key_refused(options: ClientOptions) -> dict[str, Any]:
    impostor = AuraIdentity.from_seed(bytes(range(32)))
    async with Endpoint(impostor, [Address(LOOPBACK, 0)]) as endpoint:
        client = Client(options, endpoint)
        try:
            conn = await endpoint.connect(client.server, client.address)
            await client._first_echo(conn)
        except (TimeoutError, AuralinkError) as exc:
            return {"wrong_client_key_refused": True, "detail": f"{type(exc).__name__}: {exc}"}
    return {"wrong_client_key_refused": False, "detail": "echo succeeded with an unknown client key"}


async def run_client_async(options: ClientOptions) -> ClientReport:
    """All measurements, in order: connect, reconnect, RTT, throughput, auth check."""
    report = ClientReport(
        stack=STACK,
        transport="QUIC v1 (aioquic) via auralink_node.transport: mutual TLS 1.3 with Ed25519 certificates "
        "bound to AuraIDs, per-stream protocol headers, read-driven flow control",
        versions=package_versions("auralink", "aioquic", "cryptography"),
    )
    async with Endpoint(_aura(options.identity), [Address(LOOPBACK, 0)]) as endpoint:
        client = Client(options, endpoint)
        await client.connect_once(resume=False)  # warm-up
        connects = [await client.connect_once(resume=False) for _ in range(options.connects)]
        report.connect_ms = summarize([sample[0] for sample in connects])
        report.connect_first_echo_ms = summarize([sample[1] for sample in connects])
        await client.connect_once(resume=False)  # earns a ticket
        reconnects = [await client.connect_once(resume=True) for _ in range(options.connects)]
        report.reconnect_ms = summarize([sample[1] for sample in reconnects])
        report.reconnect = {
            "mode": "TLS 1.3 session ticket (PSK) with 0-RTT: the echo stream opens with the ClientHello "
            "(Endpoint.open_stream) and the server serves it before the handshake completes (echo is registered "
            "replay-safe); identities carried by the ticket, the server's checked before the echo is read",
            "session_resumed": f"{sum(sample[2] for sample in reconnects)}/{len(reconnects)}",
            "early_data_accepted": f"{sum(sample[3] for sample in reconnects)}/{len(reconnects)}",
            "handshake_ms": summarize([sample[0] for sample in reconnects]),
        }
        report.rtt_ms = summarize(await client.rtt(options.rtt_count))
        payload = Payload(options.nbytes)
        report.throughput_mb_s, report.throughput = summarize_uploads(
            await client.uploads(payload, options.uploads), options.nbytes
        )
    report.auth = await _wrong_key_refused(options) if options.auth_check else {"skipped": AUTH_CHECK_SKIPPED}
    report.notes.append("Retry (address validation) only under handshake load, as auralink ships")
    return report


def client_main(options: ClientOptions) -> ClientReport:
    """Entry point of ``client``."""
    return asyncio.run(run_client_async(options))


def main() -> None:
    """Command line entry point."""
    run_stack_cli(STACK, serve_main, client_main)


if __name__ == "__main__":
    main()
