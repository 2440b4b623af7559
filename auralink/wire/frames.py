"""Versioned, length-prefixed, type-tagged frames: the envelope of every AuraLink stream protocol.

Theory of operation
===================

A stream protocol (``auralink/ping/1``, ``auralink/relay/1``...) runs over a reliable byte
stream, a QUIC stream in production or a memory pipe in tests. A byte stream has no message
boundaries, so every message travels in a *frame*:

```text
+---------+--------------+----------------+-------------------+
| version | type         | length         | payload           |
| u8      | QUIC varint  | QUIC varint    | ``length`` bytes  |
+---------+--------------+----------------+-------------------+
```

* ``version`` is :data:`WIRE_VERSION` (1). A frame that starts with any other byte raises
  :class:`~auralink.errors.UnsupportedVersion`: there is no way to find the next frame boundary
  in a format we do not speak, so the stream is dead.
* ``type`` is the message's type tag within its protocol. It is a varint so that protocols can
  grow past 64 tags without a new version.
* ``length`` counts the payload bytes. It is checked against ``max_size``
  (:data:`DEFAULT_MAX_FRAME_SIZE`, 1 MiB, unless the protocol says otherwise) *as soon as the
  length is known*, before a single payload byte is read or buffered, so a peer cannot make us
  allocate memory by announcing a huge frame (:class:`~auralink.errors.FrameTooLarge`).

Varints are the QUIC encoding (RFC 9000 section 16) as implemented by
:class:`~auralink.wire.buffer.Buffer`, which rejects non-minimal encodings, so every frame has
exactly one encoding.

There are three layers, from the bottom up:

1. :func:`pull_frame` / :func:`push_frame` read and write one frame in a
   :class:`~auralink.wire.buffer.Buffer` that already holds the bytes (a datagram, a file, a test
   vector). A short buffer raises :class:`~auralink.wire.buffer.BufferReadError`.

2. :class:`FrameDecoder` is the incremental decoder for streams, in the manner of h11's
   ``ReceiveBuffer``. The adapter calls :meth:`FrameDecoder.feed` with whatever bytes arrived and
   then calls :meth:`FrameDecoder.next_frame` until it returns ``None`` ("need more data"). When
   the stream ends it calls :meth:`FrameDecoder.feed_eof`; if a partial frame is still buffered,
   the next :meth:`~FrameDecoder.next_frame` raises :class:`~auralink.errors.RemoteProtocolError`
   (truncated). The decoder checks each header field the moment its last byte arrives, in the
   same order as :func:`pull_frame`: version, then type, then length against ``max_size``. So the
   outcome never depends on how the stream was chunked, which is the h11 invariant our tests
   check: *any input either yields frames or raises RemoteProtocolError, and feeding it whole or
   one byte at a time gives the same frames and the same error*. After the first error the stream
   is dead: every later :meth:`~FrameDecoder.next_frame` raises that same error again, and bytes
   fed after it are discarded. Bytes are kept in one ``bytearray`` with a read offset; consumed
   bytes are dropped when the array empties, or once they are at least 64 KiB and more than half
   of it, so decoding is linear in the input however it is chunked.

3. :class:`MessageCodec` gives a frame's payload a type. One codec serves one protocol name and
   maps type tags to message classes: frozen, slotted dataclasses with a ``TYPE`` class variable
   and a ``pull(buf)`` / ``push(buf)`` pair (see :class:`Message`). :meth:`MessageCodec.decode`
   insists that the payload is consumed exactly, and turns an unknown tag into
   :class:`~auralink.errors.UnknownFrameType`.

Errors follow the tree in :mod:`auralink.errors`: bad bytes from the peer raise
:class:`~auralink.errors.RemoteProtocolError` (or a subclass), and asking us to *send* something
the format forbids (an oversized payload, an unregistered message) raises
:class:`~auralink.errors.LocalProtocolError`.

This module is a pure core: no I/O, no clocks, no event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Protocol, Self

from auralink.errors import (
    FrameTooLarge,
    LocalProtocolError,
    RemoteProtocolError,
    UnknownFrameType,
    UnsupportedVersion,
)
from auralink.wire.buffer import VARINT_MAX, Buffer, varint_size

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "WIRE_VERSION",
    "Frame",
    "FrameDecoder",
    "Message",
    "MessageCodec",
    "pull_frame",
    "push_frame",
]

WIRE_VERSION = 1
"""The version byte that opens every frame this build writes and accepts."""

DEFAULT_MAX_FRAME_SIZE = 1 << 20
"""Largest payload (1 MiB) a frame may carry unless the protocol sets its own limit."""

_MAX_HEADER_SIZE = 1 + 8 + 8
"""Version byte plus two varints of the longest (8-byte) form."""

_COMPACT_THRESHOLD = 64 * 1024
"""The decoder drops consumed bytes once at least this many sit at the front of its buffer."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a stream protocol: a type tag and an opaque payload."""

    type: int
    """The message type tag, meaningful within one protocol (a QUIC varint on the wire)."""
    payload: bytes
    """The encoded message, at most the protocol's frame-size limit."""


def _check_max_size(max_size: int) -> None:
    if not 0 <= max_size <= VARINT_MAX:
        raise LocalProtocolError(f"max_size must be between 0 and {VARINT_MAX}, not {max_size}")


def pull_frame(buf: Buffer, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> Frame:
    """Read one frame from ``buf``, checking the length against ``max_size`` before reading the payload."""
    _check_max_size(max_size)
    version = buf.pull_uint8()
    if version != WIRE_VERSION:
        raise UnsupportedVersion(version, WIRE_VERSION)
    frame_type = buf.pull_varint()
    length = buf.pull_varint()
    if length > max_size:
        raise FrameTooLarge(length, max_size)
    return Frame(type=frame_type, payload=buf.pull_bytes(length))


def push_frame(buf: Buffer, frame: Frame, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
    """Append ``frame`` to ``buf``; refuse a payload over ``max_size`` with LocalProtocolError."""
    _check_max_size(max_size)
    length = len(frame.payload)
    if length > max_size:
        raise LocalProtocolError(f"frame payload is {length} bytes, over the {max_size}-byte limit")
    varint_size(frame.type)  # range check before anything is written
    buf.push_uint8(WIRE_VERSION)
    buf.push_varint(frame.type)
    buf.push_varint(length)
    buf.push_bytes(frame.payload)


def _varint_length(first_byte: int) -> int:
    """Total encoded length of a QUIC varint, read from the two top bits of its first byte."""
    return 1 << (first_byte >> 6)


class FrameDecoder:
    """Incremental decoder that turns the bytes of one stream into :class:`Frame` objects."""

    __slots__ = ("_buf", "_eof", "_error", "_header", "_max_size", "_offset")

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        _check_max_size(max_size)
        self._max_size = max_size
        self._buf = bytearray()
        self._offset = 0
        self._eof = False
        self._error: RemoteProtocolError | None = None
        # (frame type, payload length, header length) of the frame at ``_offset``, once known.
        self._header: tuple[int, int, int] | None = None

    @property
    def max_size(self) -> int:
        """Largest payload this decoder accepts."""
        return self._max_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned inside a frame."""
        return len(self._buf) - self._offset

    @property
    def eof_received(self) -> bool:
        """True once :meth:`feed_eof` has been called."""
        return self._eof

    @property
    def finished(self) -> bool:
        """True when the stream ended cleanly: EOF was fed and every frame was returned."""
        return self._eof and self._error is None and self.buffered == 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the stream; bytes fed after an error are discarded."""
        if self._eof:
            raise LocalProtocolError("cannot feed data after feed_eof()")
        if self._error is None:
            self._buf += data

    def feed_eof(self) -> None:
        """Record that the stream ended; a partial frame left over becomes an error."""
        self._eof = True

    def take_buffered(self) -> bytes:
        """Hand over the bytes not yet returned in a frame, and forget them.

        For protocols that switch from frames to raw bytes after a header (like h11's
        ``trailing_data`` after an upgrade): the stream header is a frame, and what follows is
        the application's.
        """
        if self._error is not None:
            raise self._error.with_traceback(None)
        rest = bytes(self._buf[self._offset :])
        self._buf = bytearray()
        self._offset = 0
        self._header = None
        return rest

    def next_frame(self) -> Frame | None:
        """Return the next complete frame, or ``None`` when more data is needed."""
        if self._error is not None:
            raise self._error.with_traceback(None)
        try:
            return self._next_frame()
        except RemoteProtocolError as exc:
            self._error = exc
            self._buf = bytearray()
            self._offset = 0
            self._header = None
            raise

    def _next_frame(self) -> Frame | None:
        header = self._header
        if header is None:
            header = self._parse_header()
            if header is None:
                self._check_truncated()
                return None
            self._header = header
        frame_type, length, header_length = header
        start = self._offset + header_length
        end = start + length
        if end > len(self._buf):
            self._check_truncated()
            return None
        frame = Frame(type=frame_type, payload=bytes(self._buf[start:end]))
        self._header = None
        self._consume(end)
        return frame

    def _check_truncated(self) -> None:
        if self._eof and self.buffered:
            raise RemoteProtocolError(f"stream truncated: {self.buffered} bytes of a partial frame at end of stream")

    def _parse_header(self) -> tuple[int, int, int] | None:
        """Check each header field as soon as its last byte is buffered, in :func:`pull_frame` order."""
        buf, offset = self._buf, self._offset
        available = len(buf) - offset
        if available < 1:
            return None
        version = buf[offset]
        if version != WIRE_VERSION:
            raise UnsupportedVersion(version, WIRE_VERSION)
        if available < 2:
            return None
        type_length = _varint_length(buf[offset + 1])
        if available < 1 + type_length:
            return None
        frame_type = Buffer(buf[offset + 1 : offset + 1 + type_length]).pull_varint()
        if available < 2 + type_length:
            return None
        header_length = 1 + type_length + _varint_length(buf[offset + 1 + type_length])
        if available < header_length:
            return None
        length = Buffer(buf[offset + 1 + type_length : offset + header_length]).pull_varint()
        if length > self._max_size:
            raise FrameTooLarge(length, self._max_size)
        return frame_type, length, header_length

    def _consume(self, end: int) -> None:
        if end == len(self._buf):
            self._buf.clear()
            self._offset = 0
        elif end >= _COMPACT_THRESHOLD and 2 * end > len(self._buf):
            del self._buf[:end]
            self._offset = 0
        else:
            self._offset = end


class Message(Protocol):
    """What :class:`MessageCodec` needs from a message class (a frozen, slotted dataclass)."""

    TYPE: ClassVar[int]
    """The type tag of this message within its protocol."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        """Decode one message from ``buf`` (the frame payload)."""
        ...

    def push(self, buf: Buffer) -> None:
        """Encode this message into ``buf`` (the frame payload)."""
        ...


class MessageCodec:
    """Maps the type tags of one protocol to message classes, and messages to whole frames."""

    __slots__ = ("_by_type", "_max_size", "_protocol")

    def __init__(
        self,
        protocol: str,
        messages: Iterable[type[Message]],
        *,
        max_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        _check_max_size(max_size)
        self._protocol = protocol
        self._max_size = max_size
        self._by_type: dict[int, type[Message]] = {}
        for cls in messages:
            tag = cls.TYPE
            varint_size(tag)  # a tag must fit a varint
            if tag in self._by_type:
                raise LocalProtocolError(
                    f"protocol {protocol!r}: type {tag:#x} is used by both "
                    f"{self._by_type[tag].__name__} and {cls.__name__}"
                )
            self._by_type[tag] = cls

    @property
    def protocol(self) -> str:
        """The protocol name, such as ``auralink/ping/1``."""
        return self._protocol

    @property
    def max_size(self) -> int:
        """Largest payload this codec writes or accepts."""
        return self._max_size

    @property
    def message_types(self) -> dict[int, type[Message]]:
        """A copy of the registry: type tag to message class."""
        return dict(self._by_type)

    def encode(self, message: Message) -> bytes:
        """Return the whole frame (header and payload) that carries ``message``."""
        if self._by_type.get(message.TYPE) is not type(message):
            raise LocalProtocolError(f"{type(message).__name__} is not a message of protocol {self._protocol!r}")
        payload = Buffer()
        message.push(payload)
        out = Buffer()
        push_frame(out, Frame(type=message.TYPE, payload=payload.data()), self._max_size)
        return out.data()

    def decode(self, frame: Frame) -> Message:
        """Return the message carried by ``frame``, which must consume the payload exactly."""
        cls = self._by_type.get(frame.type)
        if cls is None:
            raise UnknownFrameType(frame.type, self._protocol)
        if len(frame.payload) > self._max_size:
            raise FrameTooLarge(len(frame.payload), self._max_size)
        buf = Buffer(frame.payload)
        try:
            message = cls.pull(buf)
        except LocalProtocolError as exc:
            # A message's own validation (say, in __post_init__) refused a decoded value:
            # on this side of the wire that is the peer's fault.
            raise RemoteProtocolError(f"{self._protocol}: invalid {cls.__name__}: {exc}") from exc
        if not buf.eof():
            raise RemoteProtocolError(f"{self._protocol}: trailing bytes: {buf.remaining} after {cls.__name__}")
        return message
