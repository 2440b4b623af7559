"""The one buffer type that every AuraLink codec reads from and writes to.

Theory of operation
-------------------
A :class:`Buffer` is a cursor over bytes. Decoders call ``pull_*`` methods, which advance
the cursor and raise :class:`BufferReadError` (a :class:`~auralink.errors.RemoteProtocolError`)
when the input ends early or a value is out of range. Encoders call ``push_*`` methods,
which append to a growing ``bytearray``. Every codec in AuraLink is a ``pull_x(buf)`` /
``push_x(buf, x)`` pair over this type, in the style of aioquic's ``Buffer``.

Integers are big-endian (network order). Variable-length integers use the QUIC encoding of
RFC 9000 section 16: the two top bits of the first byte give the length (1, 2, 4 or 8 bytes),
and the decoder insists on the shortest encoding, so that every value has exactly one
encoding and signed bytes are canonical.

This module is a pure core: no I/O, no clocks.
"""

from __future__ import annotations

import struct

from auralink.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["VARINT_MAX", "Buffer", "BufferReadError", "varint_size"]

VARINT_MAX = (1 << 62) - 1
"""Largest value a QUIC variable-length integer can hold (RFC 9000 section 16)."""

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")


class BufferReadError(RemoteProtocolError):
    """The input ended early or held a value that is not allowed at this position."""


def varint_size(value: int) -> int:
    """Return how many bytes the QUIC varint encoding of ``value`` takes."""
    if value < 0 or value > VARINT_MAX:
        raise LocalProtocolError(f"varint out of range: {value}")
    if value < 0x40:
        return 1
    if value < 0x4000:
        return 2
    if value < 0x4000_0000:
        return 4
    return 8


class Buffer:
    """A read cursor over ``data``, or a growing write buffer when created empty."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview = b"") -> None:
        self._data = bytearray(data)
        self._pos = 0

    # -- cursor -----------------------------------------------------------------
    @property
    def position(self) -> int:
        """Index of the next byte to read."""
        return self._pos

    @property
    def remaining(self) -> int:
        """Bytes left to read."""
        return len(self._data) - self._pos

    def eof(self) -> bool:
        """True when every byte has been read."""
        return self._pos >= len(self._data)

    def data(self) -> bytes:
        """Everything written (or given) so far, as immutable bytes."""
        return bytes(self._data)

    def data_slice(self, start: int, end: int) -> bytes:
        """Bytes between two positions, for signing exactly what was decoded."""
        return bytes(self._data[start:end])

    def _take(self, n: int) -> bytes:
        if n < 0:
            raise BufferReadError(f"negative length {n}")
        end = self._pos + n
        if end > len(self._data):
            raise BufferReadError(f"input ended: needed {n} bytes at offset {self._pos}, have {self.remaining}")
        out = bytes(self._data[self._pos : end])
        self._pos = end
        return out

    # -- pull ---------------------------------------------------------------------
    def pull_bytes(self, n: int) -> bytes:
        """Read exactly ``n`` bytes."""
        return self._take(n)

    def pull_uint8(self) -> int:
        """Read one unsigned byte."""
        return self._take(1)[0]

    def pull_uint16(self) -> int:
        """Read a big-endian unsigned 16-bit integer."""
        return int(_U16.unpack(self._take(2))[0])

    def pull_uint32(self) -> int:
        """Read a big-endian unsigned 32-bit integer."""
        return int(_U32.unpack(self._take(4))[0])

    def pull_uint64(self) -> int:
        """Read a big-endian unsigned 64-bit integer."""
        return int(_U64.unpack(self._take(8))[0])

    def pull_varint(self) -> int:
        """Read a QUIC variable-length integer, rejecting non-minimal encodings."""
        first = self.pull_uint8()
        length = 1 << (first >> 6)
        value = first & 0x3F
        for byte in self._take(length - 1):
            value = (value << 8) | byte
        if varint_size(value) != length:
            raise BufferReadError(f"non-minimal varint encoding of {value}")
        return value

    def pull_varint_bounded(self, limit: int, what: str) -> int:
        """Read a varint that must not exceed ``limit`` (a length or a count)."""
        value = self.pull_varint()
        if value > limit:
            raise BufferReadError(f"{what} {value} exceeds the limit of {limit}")
        return value

    def pull_length_prefixed(self, limit: int, what: str = "field") -> bytes:
        """Read a varint length (checked against ``limit`` before reading) and that many bytes."""
        return self._take(self.pull_varint_bounded(limit, f"{what} length"))

    def pull_str(self, limit: int, what: str = "string") -> str:
        """Read a length-prefixed UTF-8 string of at most ``limit`` bytes."""
        raw = self.pull_length_prefixed(limit, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BufferReadError(f"{what} is not valid UTF-8") from exc

    # -- push ---------------------------------------------------------------------
    def push_bytes(self, value: bytes) -> None:
        """Append raw bytes."""
        self._data += value

    def push_uint8(self, value: int) -> None:
        """Append one unsigned byte."""
        if not 0 <= value <= 0xFF:
            raise LocalProtocolError(f"uint8 out of range: {value}")
        self._data.append(value)

    def push_uint16(self, value: int) -> None:
        """Append a big-endian unsigned 16-bit integer."""
        self._push_struct(_U16, value, 0xFFFF)

    def push_uint32(self, value: int) -> None:
        """Append a big-endian unsigned 32-bit integer."""
        self._push_struct(_U32, value, 0xFFFF_FFFF)

    def push_uint64(self, value: int) -> None:
        """Append a big-endian unsigned 64-bit integer."""
        self._push_struct(_U64, value, 0xFFFF_FFFF_FFFF_FFFF)

    def _push_struct(self, fmt: struct.Struct, value: int, maximum: int) -> None:
        if not 0 <= value <= maximum:
            raise LocalProtocolError(f"integer out of range for {fmt.size} bytes: {value}")
        self._data += fmt.pack(value)

    def push_varint(self, value: int) -> None:
        """Append a QUIC variable-length integer in its shortest form."""
        size = varint_size(value)
        tag = {1: 0x00, 2: 0x40, 4: 0x80, 8: 0xC0}[size]
        encoded = value.to_bytes(size, "big")
        self._data.append(encoded[0] | tag)
        self._data += encoded[1:]

    def push_length_prefixed(self, value: bytes, limit: int, what: str = "field") -> None:
        """Append a varint length and the bytes; refuse values over ``limit``."""
        if len(value) > limit:
            raise LocalProtocolError(f"{what} is {len(value)} bytes, over the limit of {limit}")
        self.push_varint(len(value))
        self._data += value

    def push_str(self, value: str, limit: int, what: str = "string") -> None:
        """Append a length-prefixed UTF-8 string."""
        self.push_length_prefixed(value.encode("utf-8"), limit, what)
