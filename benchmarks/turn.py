"""What the relay's TURN server costs: allocation time and relayed packet rate, on loopback.

Prints one JSON object on stdout and nothing else. The TURN server (``auralink_node.turn``,
loopback peers allowed) runs in a child process of its own, as on a relay node. This process:

1. **Allocation time.** ``--allocations`` times, aioice's own TURN client
   (``create_turn_endpoint``) allocates and then deletes; the time to a usable relayed address
   includes the 401 challenge round trip, as every real allocation does. Median and p99, in ms.
2. **Relayed rate.** A raw client allocates, binds a channel to a peer socket, and sends
   ``--size``-byte ChannelData at each offered rate for ``--seconds``; a receiver thread counts
   what reaches the peer. Reported: packets/s delivered and the loss ratio per offered rate.

Usage::

    python benchmarks/turn.py            # 50 allocations; 5k, 10k, 20k, 40k packets/s for 2 s each
    python benchmarks/turn.py --quick    # 10 allocations; 5k and 10k packets/s for 1 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from aioice import stun
from aioice.turn import create_turn_endpoint, make_integrity_key

SERVE = """
import asyncio, json, sys
from auralink.identity import Identity
from auralink.wire import Address
from auralink_node.relay import RelayPolicy
from auralink_node.turn import TurnConfig, TurnService

async def main():
    service = TurnService(TurnConfig(allow_loopback=True, bytes_per_second=10**10, max_allocations_per_user=10**6),
                          RelayPolicy(), Address("127.0.0.1", 0))
    await service.start()
    users = [service.credentials_for(Identity.generate().aura_id) for _ in range(2)]
    print(json.dumps({"port": service.address.port, "users": [[u.username, u.password] for u in users]}), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    print(json.dumps(service.stats()), flush=True)
    service.close()

asyncio.run(main())
"""


async def allocation_times(server: tuple[str, int], username: str, password: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        transport, _ = await create_turn_endpoint(asyncio.DatagramProtocol, server, username, password)
        times.append((time.perf_counter() - started) * 1000)
        transport.close()
        await asyncio.sleep(0.01)  # let the deletion go out before the next allocation
    return times


def request(sock: socket.socket, message: stun.Message) -> stun.Message:
    sock.send(bytes(message))
    return stun.parse_message(sock.recv(2048))


def raw_channel(server: tuple[str, int], username: str, password: str, peer: tuple[str, int]) -> socket.socket:
    """A connected socket with an allocation and channel 0x4000 bound to ``peer``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
    sock.connect(server)
    sock.settimeout(5)
    challenge = request(sock, stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST))
    realm, nonce = challenge.attributes["REALM"], challenge.attributes["NONCE"]
    key = make_integrity_key(username, realm, password)
    for method, attributes in (
        (stun.Method.ALLOCATE, {"REQUESTED-TRANSPORT": 0x11000000}),
        (stun.Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": peer}),
    ):
        message = stun.Message(method, stun.Class.REQUEST, attributes=dict(attributes))
        message.attributes.update(USERNAME=username, REALM=realm, NONCE=nonce)
        message.add_message_integrity(key)
        reply = request(sock, message)
        assert reply.message_class == stun.Class.RESPONSE, reply
    return sock


def offered_rate(sock: socket.socket, peer: socket.socket, rate: int, seconds: float, size: int) -> dict[str, Any]:
    received = [0]
    stop = threading.Event()

    def receive() -> None:
        peer.settimeout(0.2)
        while not stop.is_set():
            try:
                peer.recv(4096)
                received[0] += 1
            except TimeoutError:
                continue

    thread = threading.Thread(target=receive)
    thread.start()
    packet = struct.pack("!HH", 0x4000, size) + os.urandom(size)
    batch = 32
    sent = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate) - sent
        if due <= 0:
            time.sleep(batch / rate / 4)
            continue
        for _ in range(min(due, batch)):
            sock.send(packet)
            sent += 1
    time.sleep(0.5)  # what is in flight lands
    stop.set()
    thread.join()
    return {
        "offered_pps": rate,
        "sent": sent,
        "delivered": received[0],
        "delivered_pps": round(received[0] / seconds),
        "delivered_mbit_s": round(received[0] * size * 8 / seconds / 1e6, 1),
        "loss": round(1 - received[0] / sent, 4) if sent else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allocations", type=int, default=50)
    parser.add_argument("--rates", default="5000,10000,20000,40000")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=1200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.allocations, args.rates, args.seconds = 10, "5000,10000", 1.0
    proc = subprocess.Popen([sys.executable, "-c", SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        info = json.loads(proc.stdout.readline())
        server = ("127.0.0.1", info["port"])
        (user_a, pass_a), (user_b, pass_b) = info["users"]
        times = asyncio.run(allocation_times(server, user_a, pass_a, args.allocations))
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        peer.bind(("127.0.0.1", 0))
        sock = raw_channel(server, user_b, pass_b, peer.getsockname())
        rates = [offered_rate(sock, peer, int(r), args.seconds, args.size) for r in args.rates.split(",")]
    finally:
        proc.stdin.close()
        stats = json.loads(proc.stdout.readline() or "{}")
        proc.wait(timeout=30)
    ordered = sorted(times)
    print(
        json.dumps(
            {
                "benchmark": "turn",
                "allocation_ms": {
                    "count": len(times),
                    "p50": round(statistics.median(times), 3),
                    "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
                },
                "payload_bytes": args.size,
                "relayed": rates,
                "server_stats": stats,
                "cpu_count": os.cpu_count(),
                "load_average": os.getloadavg(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
