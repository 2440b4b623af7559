"""Application error codes of AuraLink's QUIC connections and streams.

They travel in QUIC ``CONNECTION_CLOSE`` and ``RESET_STREAM`` frames (RFC 9000 section 20.2),
and in ``RESET`` frames of streams proxied through the daemon (:mod:`auralink.wire.proxy`), so the
SDK can tell a refused protocol from a lost connection whichever back end carried the stream.
"""

from __future__ import annotations

import enum

__all__ = ["ErrorCode"]


class ErrorCode(enum.IntEnum):
    """Application error codes in QUIC ``CONNECTION_CLOSE`` and ``RESET_STREAM`` frames."""

    NO_ERROR = 0x0
    INTERNAL_ERROR = 0x1
    PROTOCOL_VIOLATION = 0x2
    PROTOCOL_UNSUPPORTED = 0x3
    IDENTITY_MISMATCH = 0x10
    NO_CLIENT_CERTIFICATE = 0x11
    HANDSHAKE_TIMEOUT = 0x12
    SHUTDOWN = 0x13
    CANCELLED = 0x14
    CONNECTION_LOST = 0x15
    REFUSED = 0x16
    """Refused by policy: a relay's access list or token, a quota, a ban."""
