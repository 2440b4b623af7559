"""One node of the relay benchmark: ``relay``, ``server`` or ``client`` (see the package docstring).

The client does all the measuring, in bounded loops:

* **RTT.** ``rounds`` rounds; in each, one direct block and one relayed block, in an order that
  alternates between rounds (so neither mode always runs first, on a warmer cache or a quieter
  machine). A block is a fresh connection, ``PING_WARMUP`` pings that are thrown away (the first
  pings of a connection share the loop with identify and are slower), then ``pings`` pings of
  ``auralink/ping/1`` (32-byte payload, one at a time, each timed with ``perf_counter`` from the
  write of the ping to the read of its pong), then a path check at both ends, then close.
* **Throughput.** ``uploads`` pairs, in the same alternating order: each upload is a fresh
  connection, then ``nbytes`` written to ``bench/sink/1`` in 256 KiB writes with backpressure
  (``send``), then the end of stream; the clock runs from the first write to the sink's reply,
  whose byte count and SHA-256 must match. The connection set-up is not timed.
* **CPU.** Around every upload, the CPU time of all three processes (their CPU-time clocks, read
  by pid), so the report says how many cores each process used and how much CPU time each
  megabyte cost it. The second figure does not depend on how busy the machine was.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from auralink.errors import AuralinkError
from auralink.identity import AuraID, Identity
from auralink.wire import Address
from auralink_node.config import NodeConfig, parse_relay_address
from auralink_node.home import NodeHome
from auralink_node.node import Node
from auralink_node.paths import PATHS_PROTOCOL
from auralink_node.protocols import ping
from auralink_node.relay import RelayLink
from auralink_node.transport import MeshStream, PeerConnection

SINK = "bench/sink/1"
"""Reads until end of stream, then answers the byte count (u64, big-endian) and the SHA-256."""
PATH = "bench/path/1"
"""Answers the server's view of the connection's path (``PeerConnection.path``), then ends."""
LOOPBACK = "127.0.0.1:0"
"""Where every node listens."""
PING_WARMUP = 20
"""Pings thrown away at the start of each block."""
PING_TIMEOUT_S = 5.0
"""Upper bound on one ping."""
CONNECT_TIMEOUT_S = 15.0
"""Upper bound on one dial (and on waiting for a relay session)."""
CHUNK = 256 * 1024
"""Bytes per write in an upload."""
PAYLOAD_BLOCK = 1 << 20
"""The upload payload repeats one seeded random block of this size."""
MB = 1_000_000
"""Throughput unit: MB/s means 10**6 bytes per second."""


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout (the only thing a role writes there)."""
    print(json.dumps({"event": event, **fields}), flush=True)


def cpu_seconds(pid: int) -> float:
    """CPU time of a whole process, at ns resolution (its CPU-time clock, as in benchmarks/transport.py)."""
    return time.clock_gettime((~pid << 3) | 2)


def make_home(root: Path, seed: bytes) -> NodeHome:
    """A node home under ``root`` holding the identity of ``seed`` (no passphrase)."""
    home = NodeHome(root)
    home.root.mkdir(parents=True, exist_ok=True)
    keystore = home.keystore()
    if not keystore.exists():
        keystore.create(Identity.from_seed(seed))
    return home


def node_config(*, relay: bool = False, relay_rate: int | None = None, relays: Sequence[str] = ()) -> NodeConfig:
    """Loopback only, no mDNS, no bootstrap: nothing leaves the machine."""
    extra: dict[str, Any] = {} if relay_rate is None else {"relay_rate": relay_rate}
    return NodeConfig(listen=(LOOPBACK,), mdns=False, relay=relay, relays=tuple(relays), **extra)


def force_paths(node: Node) -> None:
    """Keep every connection of ``node`` on the path it was dialled on (see the package docstring)."""
    node.unserve(PATHS_PROTOCOL)


def install_stop_triggers(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM/SIGINT, or once stdin (a pipe held by the harness) reaches end of file."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        if not stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
            return
    except (OSError, ValueError):
        return

    def wait_for_eof() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, name="stdin-eof", daemon=True).start()


async def wait_for_session(node: Node, relay: str) -> RelayLink:
    """Our session on the home relay, once it is open."""
    link = node.relay_links[parse_relay_address(relay).aura_id]
    await link.wait_ready(CONNECT_TIMEOUT_S)
    return link


# -- relay and server -----------------------------------------------------------------------------


async def run_relay(args: argparse.Namespace) -> None:
    """Serve as a relay until told to stop; then report the forwarding counters."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    install_stop_triggers(loop, stop)
    home = make_home(args.home, bytes.fromhex(args.seed_hex))
    async with Node(home, node_config(relay=True, relay_rate=args.relay_rate), control_api=False) as node:
        force_paths(node)
        assert node.relay_service is not None
        emit("ready", role="relay", aura_id=str(node.aura_id), address=str(node.listen_addresses[0]), pid=os.getpid())
        await stop.wait()
        emit(
            "stopped",
            role="relay",
            relay_rate=node.config.relay_rate,
            stats=dict(node.relay_service.stats),
            cpu_s=round(time.process_time(), 3),
        )


async def serve_sink(stream: MeshStream) -> None:
    """Count and hash everything until end of stream, then answer."""
    digest = hashlib.sha256()
    count = 0
    while chunk := await stream.read(1 << 20):
        digest.update(chunk)
        count += len(chunk)
    await stream.send(struct.pack(">Q", count) + digest.digest())
    stream.write_eof()


async def serve_path(stream: MeshStream) -> None:
    """Answer this side's view of the connection's path."""
    await stream.send(stream.connection.path.encode())
    stream.write_eof()


async def run_server(args: argparse.Namespace) -> None:
    """Serve ping, sink and path over the relay and directly until told to stop."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    install_stop_triggers(loop, stop)
    home = make_home(args.home, bytes.fromhex(args.seed_hex))
    async with Node(home, node_config(relays=[args.relay]), control_api=False) as node:
        force_paths(node)
        node.serve(SINK, serve_sink)
        node.serve(PATH, serve_path)
        seen: list[dict[str, Any]] = []

        def closed(conn: PeerConnection) -> None:
            if conn.peer is not None and str(conn.peer) == args.client:
                seen.append({"path": conn.path, "relayed": conn.is_relayed})

        node.endpoint.on_connection_closed(closed)
        link = await wait_for_session(node, args.relay)
        emit("ready", role="server", aura_id=str(node.aura_id), address=str(node.listen_addresses[0]), pid=os.getpid())
        await stop.wait()
        emit(
            "stopped",
            role="server",
            connections_from_client={
                "relayed": sum(1 for c in seen if c["relayed"]),
                "direct": sum(1 for c in seen if not c["relayed"]),
            },
            relay_link=dict(link.stats),
            cpu_s=round(time.process_time(), 3),
        )


# -- client ---------------------------------------------------------------------------------------


class Payload:
    """``nbytes`` of seeded random data (one block repeated), with its SHA-256 computed up front."""

    def __init__(self, nbytes: int, rng: random.Random) -> None:
        block = rng.randbytes(min(PAYLOAD_BLOCK, nbytes))
        repeats, rest = divmod(nbytes, len(block))
        self.data = block * repeats + block[:rest]
        self.sha256 = hashlib.sha256(self.data).digest()


class Client:
    """Dials the server directly or through the relay, and measures."""

    def __init__(self, node: Node, link: RelayLink, server: AuraID, address: Address, pids: dict[str, int]) -> None:
        self.node = node
        self.link = link
        self.server = server
        self.address = address
        self.pids = pids

    async def connect(self, mode: str) -> PeerConnection:
        """A fresh connection on the path of ``mode`` (``direct`` or ``relayed``), checked."""
        assert self.node.endpoint.connection_to(self.server) is None, "the previous connection is still open"
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            if mode == "direct":
                conn = await self.node.endpoint.connect(self.server, [self.address])
            else:
                conn = await self.node.endpoint.connect(self.server, [], [self.link.path_to(self.server)])
        await self.check_path(conn, mode)
        return conn

    async def check_path(self, conn: PeerConnection, mode: str) -> None:
        """Both ends must see the connection on ``mode``'s path; raises otherwise."""
        expected = f"relay:{self.link.relay.aura_id}" if mode == "relayed" else f"direct:{self.address}"
        stream = await conn.open_stream(PATH)
        async with asyncio.timeout(PING_TIMEOUT_S):
            theirs = (await stream.read_all(256)).decode()
        ours_ok = conn.path == expected
        theirs_ok = theirs.startswith("relay:") if mode == "relayed" else theirs.startswith("direct:")
        if not (ours_ok and theirs_ok):
            raise SystemExit(f"{mode} connection is on the wrong path: ours {conn.path}, theirs {theirs}")

    async def close(self, conn: PeerConnection) -> None:
        conn.close()
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await conn.wait_closed()

    async def rtt_block(self, mode: str, count: int) -> list[float]:
        """One block of pings on a fresh connection; RTTs in milliseconds."""
        conn = await self.connect(mode)
        await ping.ping(conn, PING_WARMUP, timeout=PING_TIMEOUT_S)
        results = await ping.ping(conn, count, timeout=PING_TIMEOUT_S)
        await self.check_path(conn, mode)
        await self.close(conn)
        if any(r is None for r in results):
            raise SystemExit(f"{mode}: a ping timed out after {PING_TIMEOUT_S} s")
        return [r * 1e3 for r in results if r is not None]

    async def upload(self, mode: str, payload: Payload) -> dict[str, Any]:
        """One upload of the payload on a fresh connection: seconds, throughput and CPU use."""
        conn = await self.connect(mode)
        view = memoryview(payload.data)
        cpu_before = {role: cpu_seconds(pid) for role, pid in self.pids.items()}
        link_before = dict(self.link.stats)
        start = time.perf_counter()
        async with asyncio.timeout(30.0 + len(payload.data) / (0.5 * MB)):
            stream = await conn.open_stream(SINK)
            for offset in range(0, len(view), CHUNK):
                await stream.send(bytes(view[offset : offset + CHUNK]))
            stream.write_eof()
            reply = await stream.readexactly(40)
        seconds = time.perf_counter() - start
        cpu = {role: round(cpu_seconds(pid) - cpu_before[role], 3) for role, pid in self.pids.items()}
        count, digest = struct.unpack(">Q", reply[:8])[0], reply[8:]
        if count != len(payload.data) or digest != payload.sha256:
            matches = digest == payload.sha256
            raise SystemExit(
                f"{mode} upload corrupted: {count} of {len(payload.data)} bytes, digest matches: {matches}"
            )
        await self.check_path(conn, mode)
        await self.close(conn)
        result: dict[str, Any] = {
            "mode": mode,
            "bytes": len(payload.data),
            "seconds": round(seconds, 3),
            "mb_s": round(len(payload.data) / MB / seconds, 2),
            "cpu_s": cpu,
        }
        if mode == "relayed":
            result["client_link"] = {k: v - link_before.get(k, 0) for k, v in self.link.stats.items()}
        return result


def orders(rounds: int) -> list[tuple[str, str]]:
    """Which mode goes first in each round: alternating, direct first in round 0."""
    return [("direct", "relayed") if index % 2 == 0 else ("relayed", "direct") for index in range(rounds)]


async def run_client(args: argparse.Namespace) -> None:
    """Measure, print the report, and stop."""
    home = make_home(args.home, bytes.fromhex(args.seed_hex))
    server_id, _, server_address = args.server.partition("@")
    pids = dict(zip(("relay", "server"), map(int, args.pids.split(",")), strict=True)) | {"client": os.getpid()}
    async with Node(home, node_config(relays=[args.relay]), control_api=False) as node:
        force_paths(node)
        link = await wait_for_session(node, args.relay)
        client = Client(node, link, AuraID.parse(server_id), Address.parse(server_address), pids)
        rtt: dict[str, list[float]] = {"direct": [], "relayed": []}
        blocks: list[dict[str, Any]] = []
        for index, order in enumerate(orders(args.rounds)):
            for mode in order:
                samples = await client.rtt_block(mode, args.pings)
                rtt[mode].extend(samples)
                blocks.append({"round": index, "mode": mode, "p50_ms": round(sorted(samples)[len(samples) // 2], 3)})
            print(f"relay benchmark: RTT round {index + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        payload = Payload(args.bytes, random.Random(args.seed))
        uploads: list[dict[str, Any]] = []
        for index, order in enumerate(orders(args.uploads)):
            for mode in order:
                try:
                    uploads.append(await client.upload(mode, payload))
                except (TimeoutError, AuralinkError) as exc:
                    uploads.append({"mode": mode, "error": f"{type(exc).__name__}: {exc}"})
                    if (conn := node.endpoint.connection_to(client.server)) is not None:
                        await client.close(conn)
            print(f"relay benchmark: upload pair {index + 1}/{args.uploads} done", file=sys.stderr, flush=True)
        emit(
            "report",
            role="client",
            rtt_ms=rtt,
            rtt_blocks=blocks,
            uploads=uploads,
            client_link=dict(link.stats),
            cpu_s=round(time.process_time(), 3),
        )


# -- command line ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.relay_stack.node")
    parser.add_argument("role", choices=("relay", "server", "client"))
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--seed-hex", required=True, help="the node's 32-byte identity seed, hex")
    parser.add_argument("--relay-rate", type=int, help="relay: bytes/s each session may send")
    parser.add_argument("--relay", help="server, client: the relay, AURAID@HOST:PORT")
    parser.add_argument("--client", help="server: the client's AuraID (for the path counters)")
    parser.add_argument("--server", help="client: the server, AURAID@HOST:PORT")
    parser.add_argument("--pids", help="client: the relay's and the server's pids, R,B")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pings", type=int, default=400)
    parser.add_argument("--bytes", type=int, default=50 * MB)
    parser.add_argument("--uploads", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run one role."""
    args = parse_args(argv)
    runners: dict[str, Callable[[argparse.Namespace], Any]] = {
        "relay": run_relay,
        "server": run_server,
        "client": run_client,
    }
    asyncio.run(runners[args.role](args))


if __name__ == "__main__":
    main()
