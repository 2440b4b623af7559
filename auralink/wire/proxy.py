"""The framing of mesh streams proxied through the daemon's control socket.

Theory of operation
-------------------
An SDK app that uses a running daemon reaches mesh streams through ``<home>/node.sock``. After
an HTTP upgrade (``Upgrade: auralink-stream/1``) the socket carries one mesh stream, framed with
the ordinary :mod:`auralink.wire` frames so that the stream's end and resets survive the hop:

* ``DATA`` (payload: stream bytes), ``END`` (the sender ended its side, like a QUIC FIN), and
  ``RESET`` (payload: varint error code; the stream is abandoned).

A listener socket (``Upgrade: auralink-listen/1``) carries ``INCOMING`` notices, one per stream a
peer opened for the app's protocol: a varint ticket and the peer's 32-byte key. The app claims
the stream with a second upgrade naming the ticket. Frames are at most :data:`MAX_PROXY_FRAME`
bytes, so a proxy never buffers more than that per read.
"""

from __future__ import annotations

from auralink.wire.buffer import Buffer
from auralink.wire.frames import Frame, push_frame

__all__ = [
    "DATA",
    "END",
    "INCOMING",
    "LISTEN_UPGRADE",
    "MAX_PROXY_FRAME",
    "RESET",
    "STREAM_UPGRADE",
    "encode",
    "encode_incoming",
    "encode_reset",
]

STREAM_UPGRADE = "auralink-stream/1"
"""The ``Upgrade`` token of a proxied stream."""
LISTEN_UPGRADE = "auralink-listen/1"
"""The ``Upgrade`` token of a listener channel."""
MAX_PROXY_FRAME = 256 * 1024
"""Largest frame payload on a proxied stream."""

DATA = 0x1
END = 0x2
RESET = 0x3
INCOMING = 0x4


def encode(frame_type: int, payload: bytes = b"") -> bytes:
    """One frame."""
    buf = Buffer()
    push_frame(buf, Frame(frame_type, payload), MAX_PROXY_FRAME)
    return buf.data()


def encode_reset(code: int) -> bytes:
    """A ``RESET`` frame with its error code."""
    body = Buffer()
    body.push_varint(code)
    return encode(RESET, body.data())


def encode_incoming(ticket: int, peer_key: bytes) -> bytes:
    """An ``INCOMING`` notice."""
    body = Buffer()
    body.push_varint(ticket)
    body.push_bytes(peer_key)
    return encode(INCOMING, body.data())
