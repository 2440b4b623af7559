"""The AuraLink wire format: one buffer type, frames, and typed messages.

:mod:`auralink.wire.buffer` holds :class:`Buffer`, the cursor every codec reads from and writes
to. :mod:`auralink.wire.frames` wraps messages in versioned, length-prefixed, type-tagged frames
and decodes them from streams incrementally. Both are pure cores with no I/O; see their module
docstrings for the theory of operation.
"""

from __future__ import annotations

from auralink.wire.address import Address, pull_address, push_address
from auralink.wire.buffer import Buffer, BufferReadError
from auralink.wire.frames import (
    DEFAULT_MAX_FRAME_SIZE,
    WIRE_VERSION,
    Frame,
    FrameDecoder,
    Message,
    MessageCodec,
    pull_frame,
    push_frame,
)

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "Address",
    "WIRE_VERSION",
    "Buffer",
    "BufferReadError",
    "Frame",
    "FrameDecoder",
    "Message",
    "MessageCodec",
    "pull_address",
    "pull_frame",
    "push_address",
    "push_frame",
]
