"""Echo over the mesh: one app serves ``example/echo/1``, another streams bytes through it.

Run a server and a client, each with its own node home (``auralink-node --home H init`` first)::

    python examples/echo.py serve --home /tmp/a --listen 127.0.0.1:7701
    python examples/echo.py send --home /tmp/b --listen 127.0.0.1:0 \\
        --to <A's AuraID> --addr 127.0.0.1:7701 --bytes 50000000

If ``auralink-node --home H up`` runs for a home, the app uses that daemon; otherwise it starts an
embedded node. Both print one JSON object per event, including how much the process's memory
grew (peak RSS over the RSS once connected), which shows the stream's backpressure at work.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import signal
import sys
import time
from pathlib import Path

import auralink
from auralink.mesh import Stream

PROTOCOL = "example/echo/1"
CHUNK = 64 * 1024


def _memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def serve(args: argparse.Namespace) -> None:
    async with auralink.connect(args.home, listen=args.listen) as mesh:
        baseline = _memory_kib("VmRSS")

        async def echo(stream: Stream) -> None:
            total = 0
            while chunk := await stream.read(CHUNK):
                total += len(chunk)
                await stream.send(chunk)
            stream.write_eof()
            grown = (_memory_kib("VmHWM") - baseline) / 1024
            _emit(event="echoed", bytes=total, peer=str(stream.peer), rss_growth_mb=round(grown, 1))

        await mesh.serve(PROTOCOL, echo)
        status = await mesh.status()
        _emit(event="ready", backend=mesh.backend, aura_id=str(mesh.identity.aura_id), listen=status["listen"])
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()


async def send(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    block = rng.randbytes(CHUNK)
    async with auralink.connect(args.home, listen=args.listen) as mesh:
        await mesh.dial(args.to, args.addr)
        baseline = _memory_kib("VmRSS")
        started = time.perf_counter()
        stream = await mesh.open_stream(args.to, PROTOCOL, args.addr)
        sent_hash, received_hash = hashlib.sha256(), hashlib.sha256()

        async def writer() -> None:
            remaining = args.bytes
            while remaining > 0:
                piece = block[: min(CHUNK, remaining)]
                sent_hash.update(piece)
                await stream.send(piece)
                remaining -= len(piece)
            stream.write_eof()

        async def reader() -> int:
            total = 0
            while chunk := await stream.read(CHUNK):
                received_hash.update(chunk)
                total += len(chunk)
            return total

        _, received = await asyncio.gather(writer(), reader())
        seconds = time.perf_counter() - started
        _emit(
            event="done",
            backend=mesh.backend,
            bytes=received,
            checksum_ok=received == args.bytes and sent_hash.digest() == received_hash.digest(),
            seconds=round(seconds, 3),
            mb_s=round(2 * received / seconds / 1e6, 2),
            rss_growth_mb=round((_memory_kib("VmHWM") - baseline) / 1024, 1),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["serve", "send"])
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--listen", action="append", help="for an embedded node: HOST:PORT (repeatable)")
    parser.add_argument("--to", help="AuraID of the echo server (send)")
    parser.add_argument("--addr", action="append", default=[], help="its HOST:PORT (send; repeatable)")
    parser.add_argument("--bytes", type=int, default=10_000_000, help="how much to send (send)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.mode == "send" and not args.to:
        parser.error("send needs --to AURA_ID")
    try:
        asyncio.run(serve(args) if args.mode == "serve" else send(args))
    except auralink.AuralinkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
