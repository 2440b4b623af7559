"""Application streams over a peer connection, with backpressure both ways.

Theory of operation
-------------------
A :class:`MeshStream` is one bidirectional QUIC stream that carries one stream protocol
(``auralink/ping/1``, an app's ``myapp/chat/1``...). The opener writes a header frame that names
the protocol (:func:`encode_stream_header`) and may send data right behind it without waiting;
the acceptor reads the header, looks the protocol up in its router and hands the stream to the
handler, or resets it with :data:`ErrorCode.PROTOCOL_UNSUPPORTED`.

Backpressure is real in both directions:

* **Sending.** :meth:`MeshStream.write` queues bytes in aioquic, which sends them as the peer's
  credit allows. :meth:`MeshStream.drain` waits while more than ``high_water`` bytes are written
  but not yet acknowledged, and wakes once that falls to ``low_water``: the connection checks its
  blocked writers each time it processes incoming packets (acks), so nothing polls.
* **Receiving.** Data waits in the stream until the application reads it, and the connection
  grants the peer new credit only for bytes that were read (see
  :mod:`auralink_node.transport.quic`). A reader that stops makes the sender stop after one
  window, so memory is bounded by the window on each side.

Errors keep "closed" apart from "broken": reading after the peer's clean end of stream returns
``b""``; a reset by the peer raises :class:`~auralink.errors.StreamReset` (or
:class:`~auralink.errors.ProtocolNotSupported`); a dead connection raises what it died of.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import TYPE_CHECKING

from auralink.errors import (
    LocalProtocolError,
    ProtocolNotSupported,
    RemoteProtocolError,
    StreamReset,
)
from auralink.identity import AuraID
from auralink.mesh.stream import StreamHelpers
from auralink.wire import Buffer, Frame, FrameDecoder, push_frame
from auralink.wire.codes import ErrorCode

if TYPE_CHECKING:
    from auralink_node.transport.connection import PeerConnection

__all__ = [
    "MAX_PROTOCOL_NAME",
    "ErrorCode",
    "MeshStream",
    "StreamHeaderDecoder",
    "encode_stream_header",
    "validate_protocol_name",
]

MAX_PROTOCOL_NAME = 64
"""Longest stream protocol name, in bytes."""
_PROTOCOL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*/[0-9]+")
_HEADER_FRAME_TYPE = 0x01
_HEADER_MAX = MAX_PROTOCOL_NAME + 16


def validate_protocol_name(name: str) -> str:
    """Check a stream protocol name (``namespace/name/version``); raise :class:`LocalProtocolError`."""
    if not isinstance(name, str) or len(name) > MAX_PROTOCOL_NAME or not _PROTOCOL_NAME.fullmatch(name):
        raise LocalProtocolError(
            f"protocol name {name!r} must look like 'namespace/name/version': lower-case a-z, 0-9, '.', '_' "
            f"and '-' in each part, a numeric version, at most {MAX_PROTOCOL_NAME} bytes"
        )
    return name


def encode_stream_header(protocol: str) -> bytes:
    """The first bytes the opener writes on a stream: a frame naming the protocol."""
    buf = Buffer()
    push_frame(buf, Frame(_HEADER_FRAME_TYPE, validate_protocol_name(protocol).encode("ascii")), _HEADER_MAX)
    return buf.data()


class StreamHeaderDecoder:
    """Reads the protocol header at the start of an incoming stream, however it is chunked."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = FrameDecoder(max_size=_HEADER_MAX)

    def feed(self, data: bytes) -> tuple[str, bytes] | None:
        """Feed bytes; returns ``(protocol, rest)`` once the header is complete, else None.

        Raises :class:`~auralink.errors.RemoteProtocolError` on a malformed header.
        """
        self._decoder.feed(data)
        frame = self._decoder.next_frame()
        if frame is None:
            return None
        if frame.type != _HEADER_FRAME_TYPE:
            raise RemoteProtocolError(f"stream must start with a protocol header, got frame type {frame.type}")
        try:
            protocol = validate_protocol_name(frame.payload.decode("ascii"))
        except (UnicodeDecodeError, LocalProtocolError) as exc:
            raise RemoteProtocolError(f"invalid protocol name in stream header: {exc}") from exc
        return protocol, self._decoder.take_buffered()


class MeshStream(StreamHelpers):
    """A bidirectional stream to a peer, speaking one protocol."""

    def __init__(
        self,
        connection: PeerConnection,
        stream_id: int,
        protocol: str,
        *,
        high_water: int,
        low_water: int,
    ) -> None:
        self._connection = connection
        self.stream_id = stream_id
        self.protocol = protocol
        self._high_water = high_water
        self._low_water = low_water
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof_received = False
        self._eof_sent = False
        self._error: BaseException | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"MeshStream({self.protocol}, id={self.stream_id}, peer={self.peer.short() if self.peer else None})"

    @property
    def peer(self) -> AuraID | None:
        """The verified AuraID at the other end (for a stream served from 0-RTT data, the key its ticket proves)."""
        return self._connection.claimed_peer

    @property
    def connection(self) -> PeerConnection:
        """The connection this stream runs on."""
        return self._connection

    @property
    def at_eof(self) -> bool:
        """True once the peer ended its side and every byte was read."""
        return self._eof_received and not self._chunks

    # -- fed by the connection ---------------------------------------------------------
    def _feed(self, data: bytes, end_stream: bool) -> None:
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
        if end_stream:
            self._eof_received = True
        self._wake_reader()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._wake_reader()
        self._wake_writer(force=True)

    def _reset_by_peer(self, error_code: int) -> None:
        if error_code == ErrorCode.PROTOCOL_UNSUPPORTED:
            self._fail(ProtocolNotSupported(self.protocol, error_code))
        else:
            self._fail(StreamReset(f"peer reset stream {self.protocol!r} (code {error_code:#x})", error_code))

    def _wake_reader(self) -> None:
        waiter, self._read_waiter = self._read_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self, *, force: bool = False) -> bool:
        """Resume a blocked ``drain()`` if the backlog allows; True once nobody waits any more."""
        waiter = self._drain_waiter
        if waiter is None:
            return True
        if force or self._connection.unsent_bytes(self.stream_id) <= self._low_water:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)
            return True
        return False

    # -- reading -------------------------------------------------------------------------
    async def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes; ``b""`` once the peer has ended the stream and all was read."""
        if n <= 0:
            raise LocalProtocolError("read size must be positive")
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof_received:
                return b""
            self._read_waiter = asyncio.get_running_loop().create_future()
            await self._read_waiter
        chunk = self._chunks.popleft()
        if len(chunk) > n:
            self._chunks.appendleft(chunk[n:])
            chunk = chunk[:n]
        elif self._chunks and len(chunk) < n:
            # Hand over everything already here (up to n) in one call: a packet is ~1.2 kB, and a
            # task switch per packet would cost more than the copy.
            parts, size = [chunk], len(chunk)
            while self._chunks and size + len(self._chunks[0]) <= n:
                part = self._chunks.popleft()
                parts.append(part)
                size += len(part)
            chunk = b"".join(parts)
        self._buffered -= len(chunk)
        self._connection.consumed(self.stream_id, len(chunk))
        return chunk

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending; call :meth:`drain` to respect backpressure."""
        if self._error is not None:
            raise self._error
        if self._eof_sent:
            raise LocalProtocolError(f"stream {self.protocol!r} was already ended with write_eof()")
        if data:
            self._connection.send_stream_data(self.stream_id, data, end_stream=False)

    @property
    def backlog(self) -> int:
        """Bytes written but not yet acknowledged by the peer (``drain`` waits above its high water)."""
        return self._connection.unsent_bytes(self.stream_id)

    @property
    def high_water(self) -> int:
        """The backlog above which :meth:`drain` waits."""
        return self._high_water

    async def drain(self) -> None:
        """Return at once while at most ``high_water`` bytes are unacknowledged; else wait until ``low_water``."""
        if self._error is not None:
            raise self._error
        if self._connection.unsent_bytes(self.stream_id) <= self._high_water:
            return
        self._drain_waiter = asyncio.get_running_loop().create_future()
        self._connection.writer_blocked(self)
        await self._drain_waiter
        if self._error is not None:
            raise self._error

    def write_eof(self) -> None:
        """End our side of the stream (the peer reads ``b""`` after the last byte)."""
        if self._error is not None:
            raise self._error
        if not self._eof_sent:
            self._eof_sent = True
            self._connection.send_stream_data(self.stream_id, b"", end_stream=True)

    def reset(self, error_code: int = ErrorCode.CANCELLED) -> None:
        """Abandon the stream in both directions."""
        if self._error is None:
            self._connection.reset_stream(self.stream_id, error_code)
            self._fail(StreamReset(f"stream {self.protocol!r} was reset locally", error_code))

    async def aclose(self) -> None:
        """End our side and wait until everything we wrote is acknowledged."""
        if self._error is None:
            self.write_eof()
            marks = (self._high_water, self._low_water)
            self._high_water = self._low_water = 0
            try:
                await self.drain()
            finally:
                self._high_water, self._low_water = marks
