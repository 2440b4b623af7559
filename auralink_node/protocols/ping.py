"""``auralink/ping/1``: round-trip time over a mesh stream.

Theory of operation
-------------------
The pinger opens a stream and sends :class:`Ping` messages one at a time; the responder answers
each with a :class:`Pong` carrying the same nonce and payload. The pinger measures the time from
writing a ping to reading its pong, so the figure includes QUIC, the stream layer and both
event loops: what an application would see. A pong with the wrong nonce or payload is a protocol
violation. A responder serves at most :data:`MAX_PINGS_PER_STREAM` pings per stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Self

from auralink.errors import LocalProtocolError, RemoteProtocolError
from auralink.wire import Buffer, MessageCodec
from auralink_node.protocols.framing import MessageReader
from auralink_node.transport.connection import PeerConnection
from auralink_node.transport.streams import MeshStream

__all__ = ["MAX_PINGS_PER_STREAM", "PING_PROTOCOL", "Ping", "Pong", "ping", "serve_ping"]

PING_PROTOCOL = "auralink/ping/1"
"""The stream protocol name."""
MAX_PINGS_PER_STREAM = 100_000
"""A responder closes a stream after this many pings."""
_MAX_PAYLOAD = 1024


@dataclass(frozen=True, slots=True)
class _Echoed:
    nonce: int
    """Identifies the ping; the pong repeats it."""
    payload: bytes
    """Padding, up to 1024 bytes, echoed back."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(buf.pull_uint64(), buf.pull_length_prefixed(_MAX_PAYLOAD, "payload"))

    def push(self, buf: Buffer) -> None:
        buf.push_uint64(self.nonce)
        buf.push_length_prefixed(self.payload, _MAX_PAYLOAD, "payload")


@dataclass(frozen=True, slots=True)
class Ping(_Echoed):
    """A request to echo ``payload``."""

    TYPE: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class Pong(_Echoed):
    """The answer to a :class:`Ping`, with its nonce and payload."""

    TYPE: ClassVar[int] = 2


CODEC = MessageCodec(PING_PROTOCOL, [Ping, Pong], max_size=_MAX_PAYLOAD + 32)


async def serve_ping(stream: MeshStream) -> None:
    """Answer pings on ``stream`` until the pinger ends it."""
    reader = MessageReader(stream, CODEC)
    for _ in range(MAX_PINGS_PER_STREAM):
        message = await reader.next()
        if message is None:
            break
        if not isinstance(message, Ping):
            raise RemoteProtocolError(f"{PING_PROTOCOL}: expected Ping, got {type(message).__name__}")
        await stream.send(CODEC.encode(Pong(message.nonce, message.payload)))
    stream.write_eof()


async def ping(
    connection: PeerConnection,
    count: int,
    *,
    payload_size: int = 32,
    timeout: float = 5.0,
    clock: Callable[[], float] = time.perf_counter,
    on_reply: Callable[[int, float], None] | None = None,
) -> list[float | None]:
    """Ping the peer ``count`` times; each entry is an RTT in seconds, or None if it timed out.

    A timed-out ping ends the run (the stream is then in an unknown state); the remaining entries
    are None too.
    """
    if not 1 <= count <= MAX_PINGS_PER_STREAM:
        raise LocalProtocolError(f"count must be 1 to {MAX_PINGS_PER_STREAM}")
    if not 0 <= payload_size <= _MAX_PAYLOAD:
        raise LocalProtocolError(f"payload_size must be 0 to {_MAX_PAYLOAD}")
    results: list[float | None] = [None] * count
    stream = await connection.open_stream(PING_PROTOCOL)
    reader = MessageReader(stream, CODEC)
    payload = bytes(payload_size)
    try:
        for nonce in range(count):
            started = clock()
            stream.write(CODEC.encode(Ping(nonce, payload)))
            try:
                async with asyncio.timeout(timeout):
                    pong = await reader.expect(Pong)
            except TimeoutError:
                break
            if pong.nonce != nonce or pong.payload != payload:
                raise RemoteProtocolError(f"{PING_PROTOCOL}: pong does not match ping {nonce}")
            rtt = results[nonce] = clock() - started
            if on_reply is not None:
                on_reply(nonce, rtt)
        stream.write_eof()
    finally:
        if any(r is None for r in results):
            stream.reset()
    return results
