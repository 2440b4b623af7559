"""iroh through its Python bindings (``iroh`` on PyPI: a Rust core behind uniffi), offline.

Theory of operation
-------------------
An iroh endpoint's identity *is* its Ed25519 key: TLS 1.3 with raw public keys (RFC 7250)
authenticates both sides during the QUIC handshake, and a dial names the key it expects (the
``EndpointId``). The benchmark seeds both keys from the identity files, so the same 32-byte seeds
give the same keys as on the other stacks. On top of what iroh checks, the server closes a
connection whose ``remote_id()`` it does not accept and the client compares ``remote_id()`` with
the pinned server key.

Offline operation: endpoints are bound with ``preset_minimal()`` (crypto provider only: no n0
discovery, no DNS, no pkarr publishing), ``RelayMode.disabled()`` and ``bind_addr`` on
``127.0.0.1``; the client dials an ``EndpointAddr`` carrying only the server's direct loopback
address. Nothing contacts n0's relays or any address off this machine.

What "fresh" means here. rustls inside iroh caches TLS session tickets per remote endpoint, so a
second dial from the same endpoint may resume. ``connect_ms`` therefore binds a new client
endpoint for every sample (binding and closing are not timed); dials from one long-lived
endpoint are reported as ``extra.connect_same_endpoint_ms`` and, to the first echo, as
``reconnect_ms``. The bindings expose no 0-RTT API (no ``into_0rtt``), so no reconnect sends
early data.

Throughput caveat: the bindings copy every written buffer into a Rust buffer one byte at a time
in Python (``_UniffiRustBufferBuilder.write``), which caps uploads. ``throughput_mb_s`` is
iroh as shipped; ``extra.throughput_memmove_patch_mb_s`` repeats the uploads with that one
method replaced by ``ctypes.memmove`` in the client, to show what the Rust core does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import iroh
from iroh import iroh_ffi

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

STACK = "iroh"
ALPN = b"auralink-bench/1"
UNAUTHORIZED = 0x101
"""Application error code for a connection closed because the peer's key is not accepted."""
READ_CHUNK = 1 << 20
"""Largest read the server asks for."""
WRITE_CHUNK = 256 * 1024
"""Bytes per ``write_all`` on uploads."""
RTT_WARMUP = 20
"""Echo round trips done before the measured ones."""

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())


async def bind_endpoint(seed: bytes) -> iroh.Endpoint:
    """An endpoint on loopback with relays, discovery and address publishing all off."""
    return await iroh.Endpoint.bind(
        iroh.EndpointOptions(
            preset=iroh.preset_minimal(),
            bind_addr=f"{LOOPBACK}:0",
            secret_key=seed,
            alpns=[ALPN],
            relay_mode=iroh.RelayMode.disabled(),
        )
    )


def loopback_socket(endpoint: iroh.Endpoint) -> str:
    """The endpoint's ``127.0.0.1:port`` socket (it also binds an IPv6 one)."""
    for address in endpoint.bound_sockets():
        if address.startswith(f"{LOOPBACK}:"):
            return address
    raise RuntimeError(f"endpoint has no loopback socket: {endpoint.bound_sockets()}")


async def close_endpoint(endpoint: iroh.Endpoint) -> None:
    """Close, bounded in time."""
    async with asyncio.timeout(CLOSE_TIMEOUT_S):
        await endpoint.close()


def describe(exc: BaseException) -> str:
    """A one-line account of an error; ``IrohError`` keeps its text in ``debug_message()``."""
    if isinstance(exc, iroh.IrohError):
        return f"IrohError: {exc.debug_message()}"
    return f"{type(exc).__name__}: {exc}"


# -- server -------------------------------------------------------------------------------------


async def handle_stream(stream: iroh.BiStream) -> None:
    """Serve one stream: echo or sink, chosen by its first byte."""
    recv, send = stream.recv(), stream.send()
    service = await recv.read_exact(1)
    if service == ECHO_TAG:
        while data := await recv.read(READ_CHUNK):
            await send.write_all(data)
        await send.finish()
    elif service == SINK_TAG:
        count = 0
        hasher = hashlib.sha256()
        while data := await recv.read(READ_CHUNK):
            count += len(data)
            hasher.update(data)
        await send.write_all(encode_sink_reply(count, hasher.digest()))
        await send.finish()
    else:
        await send.reset(UNAUTHORIZED)


async def handle_connection(incoming: iroh.Incoming, identity: Identity, tasks: asyncio.TaskGroup) -> None:
    """Finish the handshake, check the client key, then serve its streams until it leaves."""
    try:
        connection = await (await incoming.accept()).connect()
        if not identity.accepts(connection.remote_id().to_bytes()):
            connection.close(UNAUTHORIZED, b"client key not accepted")
            return
        while True:
            stream = await connection.accept_bi()
            tasks.create_task(guarded(handle_stream(stream)))
    except iroh.IrohError as exc:  # the client closed the connection, or the endpoint closed
        logger.debug("connection ended: %s", exc)


async def guarded(work: Any) -> None:
    """Run one stream handler; a broken stream ends only that stream."""
    try:
        await work
    except iroh.IrohError as exc:
        logger.debug("stream ended: %s", exc)


async def serve_async(options: ServerOptions) -> None:
    """Serve until stdin closes or a stop signal arrives."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    install_stop_triggers(lambda: loop.call_soon_threadsafe(stop.set))
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    endpoint = await bind_endpoint(options.identity.seed)
    socket = loopback_socket(endpoint)
    ServerInfo(
        stack=STACK,
        host=LOOPBACK,
        port=int(socket.rsplit(":", 1)[1]),
        public_key_hex=endpoint.id().to_bytes().hex(),
        pid=os.getpid(),
        address={"endpoint_id": str(endpoint.id()), "direct_addresses": [socket], "alpn": ALPN.decode()},
    ).announce(options.port_file)

    async def accept_loop(tasks: asyncio.TaskGroup) -> None:
        while (incoming := await endpoint.accept_next()) is not None:
            tasks.create_task(handle_connection(incoming, options.identity, tasks))

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(accept_loop(tasks))
        await stop.wait()
        await close_endpoint(endpoint)


def serve_main(options: ServerOptions) -> None:
    """Entry point of ``server``."""
    asyncio.run(serve_async(options))


# -- client -------------------------------------------------------------------------------------


@contextlib.contextmanager
def memmove_buffer_writes() -> Iterator[None]:
    """Replace the bindings' byte-by-byte buffer copy with ``ctypes.memmove`` (client side only)."""
    builder = iroh_ffi._UniffiRustBufferBuilder
    original = builder.write

    def write(self: Any, value: bytes) -> None:
        size = len(value)
        with self._reserve(size):
            ctypes.memmove(ctypes.addressof(self.rbuf.data.contents) + self.rbuf.len, bytes(value), size)

    builder.write = write  # type: ignore[method-assign]
    try:
        yield
    finally:
        builder.write = original  # type: ignore[method-assign]


class Client:
    """Runs the measurements against one server."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self.server_key = options.server_key()
        self.server_addr = iroh.EndpointAddr(
            iroh.EndpointId.from_bytes(self.server_key), None, options.server.address["direct_addresses"]
        )

    def _check_server(self, connection: iroh.Connection) -> None:
        if connection.remote_id().to_bytes() != self.server_key:
            connection.close(UNAUTHORIZED, b"server key not accepted")
            raise ConnectionError("server key not accepted")

    async def dial(self, endpoint: iroh.Endpoint) -> tuple[iroh.Connection, float, float]:
        """Connect and echo once: (connection, ms to verified, ms to first echo)."""
        message = bytes(ECHO_MESSAGE_SIZE)
        start = time.perf_counter()
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            connection = await endpoint.connect(self.server_addr, ALPN)
        self._check_server(connection)
        connected = time.perf_counter()
        async with asyncio.timeout(ECHO_TIMEOUT_S):
            stream = await connection.open_bi()
            send = stream.send()
            await send.write_all(ECHO_TAG + message)
            await stream.recv().read_exact(ECHO_MESSAGE_SIZE)
        echoed = time.perf_counter()
        await send.finish()
        return connection, (connected - start) * 1e3, (echoed - start) * 1e3

    async def fresh_connects(self, count: int) -> list[tuple[float, float]]:
        """``count`` dials, each from a newly bound endpoint (no TLS state to resume)."""
        samples = []
        for _ in range(count):
            endpoint = await bind_endpoint(self.options.identity.seed)
            try:
                connection, connected_ms, echoed_ms = await self.dial(endpoint)
                connection.close(0, b"done")
                samples.append((connected_ms, echoed_ms))
            finally:
                await close_endpoint(endpoint)
        return samples

    async def warm_connects(self, count: int) -> list[tuple[float, float]]:
        """``count`` dials from one endpoint that has already connected once."""
        samples = []
        endpoint = await bind_endpoint(self.options.identity.seed)
        try:
            connection, _, _ = await self.dial(endpoint)
            connection.close(0, b"done")
            for _ in range(count):
                connection, connected_ms, echoed_ms = await self.dial(endpoint)
                connection.close(0, b"done")
                samples.append((connected_ms, echoed_ms))
        finally:
            await close_endpoint(endpoint)
        return samples

    async def rtt(self, endpoint: iroh.Endpoint, count: int) -> list[float]:
        """``count`` 64-byte echo round trips on one stream."""
        message = bytes(ECHO_MESSAGE_SIZE)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            connection = await endpoint.connect(self.server_addr, ALPN)
        self._check_server(connection)
        samples: list[float] = []
        stream = await connection.open_bi()
        send, recv = stream.send(), stream.recv()
        await send.write_all(ECHO_TAG)
        for index in range(RTT_WARMUP + count):
            start = time.perf_counter()
            async with asyncio.timeout(ECHO_TIMEOUT_S):
                await send.write_all(message)
                await recv.read_exact(ECHO_MESSAGE_SIZE)
            if index >= RTT_WARMUP:
                samples.append((time.perf_counter() - start) * 1e3)
        await send.finish()
        connection.close(0, b"done")
        return samples

    async def uploads(self, endpoint: iroh.Endpoint, payload: Payload, count: int) -> list[UploadOutcome]:
        """``count`` uploads of the payload, each on a new stream of one connection."""
        chunks = [bytes(chunk) for chunk in payload.chunks(WRITE_CHUNK)]
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            connection = await endpoint.connect(self.server_addr, ALPN)
        self._check_server(connection)
        outcomes: list[UploadOutcome] = []
        for _ in range(count):
            start = time.perf_counter()
            try:
                async with asyncio.timeout(upload_timeout_s(len(payload))):
                    stream = await connection.open_bi()
                    send = stream.send()
                    await send.write_all(SINK_TAG)
                    for chunk in chunks:
                        await send.write_all(chunk)
                    await send.finish()
                    error = payload.check(await stream.recv().read_exact(SINK_REPLY_SIZE))
            except (TimeoutError, iroh.IrohError) as exc:
                error = describe(exc)
            outcomes.append(UploadOutcome(time.perf_counter() - start, error))
        connection.close(0, b"done")
        return outcomes

    async def wrong_key_refused(self) -> dict[str, Any]:
        """Dial with a key the server does not accept; the echo must fail."""
        endpoint = await bind_endpoint(bytes(range(32)))
        try:
            await self.dial(endpoint)
        except (TimeoutError, ConnectionError, iroh.IrohError) as exc:
            return {"wrong_client_key_refused": True, "detail": describe(exc)}
        finally:
            await close_endpoint(endpoint)
        return {"wrong_client_key_refused": False, "detail": "echo succeeded with an unknown client key"}


async def run_client_async(options: ClientOptions) -> ClientReport:
    """All measurements, in order: connect, reconnect, RTT, throughput, auth check."""
    client = Client(options)
    report = ClientReport(
        stack=STACK,
        transport="QUIC v1 (iroh/noq Rust core via uniffi), TLS 1.3 raw public keys (RFC 7250), "
        "relays and discovery disabled, direct loopback address",
        versions=package_versions("iroh"),
    )
    await client.fresh_connects(1)  # warm-up
    fresh = await client.fresh_connects(options.connects)
    report.connect_ms = summarize([sample[0] for sample in fresh])
    report.connect_first_echo_ms = summarize([sample[1] for sample in fresh])
    warm = await client.warm_connects(options.connects)
    report.reconnect_ms = summarize([sample[1] for sample in warm])
    report.extra["connect_same_endpoint_ms"] = summarize([sample[0] for sample in warm])
    report.reconnect = {
        "mode": "new connection from an endpoint that connected before (rustls session cache); "
        "the bindings expose no 0-RTT, so the echo waits for the handshake",
        "session_resumed": "not exposed by the bindings",
        "zero_rtt_accepted": "0 (no 0-RTT API)",
    }
    endpoint = await bind_endpoint(options.identity.seed)
    try:
        report.rtt_ms = summarize(await client.rtt(endpoint, options.rtt_count))
        payload = Payload(options.nbytes)
        report.throughput_mb_s, report.throughput = summarize_uploads(
            await client.uploads(endpoint, payload, options.uploads), options.nbytes
        )
        with memmove_buffer_writes():
            patched, details = summarize_uploads(
                await client.uploads(endpoint, payload, options.uploads), options.nbytes
            )
        report.extra["throughput_memmove_patch_mb_s"] = patched
        report.extra["throughput_memmove_patch"] = details
    finally:
        await close_endpoint(endpoint)
    report.auth = await client.wrong_key_refused() if options.auth_check else {"skipped": AUTH_CHECK_SKIPPED}
    report.notes.append("connect_ms binds a new client endpoint per sample; see extra.connect_same_endpoint_ms")
    report.notes.append("throughput_mb_s is as shipped: the bindings copy written bytes one at a time in Python")
    return report


def client_main(options: ClientOptions) -> ClientReport:
    """Entry point of ``client``."""
    return asyncio.run(run_client_async(options))


def main() -> None:
    """Command line entry point."""
    run_stack_cli(STACK, serve_main, client_main)


if __name__ == "__main__":
    main()
