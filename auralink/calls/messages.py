"""``auralink/signal/1``: the wire messages of call signaling.

Theory of operation
-------------------
Signaling runs over one mesh stream per call, opened by the caller with protocol
:data:`SIGNAL_PROTOCOL`. The stream is a QUIC stream of an end-to-end, mutually authenticated
connection, so the peer is whoever ``stream.peer`` says it is: messages carry no identity and no
signature of their own. Each message is a :mod:`auralink.wire` frame (see
:class:`~auralink.wire.MessageCodec`) and names the call it belongs to by a random 16-byte
``call_id``, so that the two offers of a glare (both sides calling each other at once, on two
streams) can be told apart.

```text
caller                                   callee
  Offer(call_id, media, sdp)      ──▶
                                  ◀──    Ringing(call_id)
                                  ◀──    Answer(call_id, sdp)          (or Hangup(DECLINED))
  IceCandidate(call_id, ...)      ◀─▶    IceCandidate(call_id, ...)    (trickle; empty = end of candidates)
  Hangup(call_id, reason, detail) ◀─▶
```

SDP is carried verbatim (RFC 8866, as produced by aiortc or a browser), as UTF-8 of at most
:data:`MAX_SDP` bytes. Strings that are not UTF-8, unknown tags, short or trailing bytes all
raise :class:`~auralink.errors.RemoteProtocolError` from :data:`CODEC`. Hang-up reasons the
build does not know decode as :attr:`HangupReason.UNKNOWN` rather than failing, so a newer peer
can add reasons.

This module is a pure core: no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Self

from auralink.errors import LocalProtocolError
from auralink.wire import Buffer, MessageCodec

__all__ = [
    "CALL_ID_SIZE",
    "CODEC",
    "MAX_SDP",
    "SIGNAL_PROTOCOL",
    "Answer",
    "HangupReason",
    "Hangup",
    "IceCandidate",
    "MediaKinds",
    "Offer",
    "Ringing",
    "SignalMessage",
]

SIGNAL_PROTOCOL = "auralink/signal/1"
"""The mesh stream protocol that carries call signaling."""
CALL_ID_SIZE = 16
"""Bytes in a call id (random, chosen by the caller)."""
MAX_SDP = 64 * 1024
"""Largest SDP body, in bytes, an offer or answer may carry."""
_MAX_CANDIDATE = 1024
_MAX_MID = 64
_MAX_DETAIL = 256


class HangupReason(enum.IntEnum):
    """Why a call ended, as carried by :class:`Hangup`."""

    NORMAL = 0
    """One side hung up (or the caller cancelled before an answer)."""
    DECLINED = 1
    """The callee declined."""
    BUSY = 2
    """The callee is in another call with the caller, or refuses more calls."""
    NO_ANSWER = 3
    """Nobody answered before the ring or answer timeout."""
    GLARE = 4
    """Both sides called each other; this offer lost the tie-break and is dropped."""
    CONNECT_FAILED = 5
    """Signaling completed but media (ICE, DTLS) did not connect in time."""
    PROTOCOL_ERROR = 6
    """The peer broke the signaling protocol."""
    GONE = 7
    """The signaling stream or the connection ended without a hang-up."""
    UNKNOWN = 255
    """A reason code this build does not know (sent by a newer peer)."""


class MediaKinds(enum.IntFlag):
    """What an offer asks for."""

    NONE = 0
    AUDIO = 1
    VIDEO = 2
    DATA = 4


def _check_call_id(call_id: bytes) -> None:
    if len(call_id) != CALL_ID_SIZE:
        raise LocalProtocolError(f"a call id is {CALL_ID_SIZE} bytes, not {len(call_id)}")


@dataclass(frozen=True, slots=True)
class Offer:
    """The caller's session description: asks the callee to ring."""

    TYPE: ClassVar[int] = 1
    call_id: bytes
    """The call this offer starts (16 random bytes)."""
    media: MediaKinds
    """Audio, video and data, as asked by the caller."""
    sdp: str
    """The SDP offer."""

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        call_id = buf.pull_bytes(CALL_ID_SIZE)
        media = MediaKinds(buf.pull_uint8() & 0x07)
        return cls(call_id, media, buf.pull_str(MAX_SDP, "sdp"))

    def push(self, buf: Buffer) -> None:
        buf.push_bytes(self.call_id)
        buf.push_uint8(int(self.media))
        buf.push_str(self.sdp, MAX_SDP, "sdp")


@dataclass(frozen=True, slots=True)
class Answer:
    """The callee's session description: the call is accepted."""

    TYPE: ClassVar[int] = 2
    call_id: bytes
    """The call being answered."""
    sdp: str
    """The SDP answer."""

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(buf.pull_bytes(CALL_ID_SIZE), buf.pull_str(MAX_SDP, "sdp"))

    def push(self, buf: Buffer) -> None:
        buf.push_bytes(self.call_id)
        buf.push_str(self.sdp, MAX_SDP, "sdp")


@dataclass(frozen=True, slots=True)
class IceCandidate:
    """One trickled ICE candidate (RFC 8838); an empty ``candidate`` means end of candidates."""

    TYPE: ClassVar[int] = 3
    call_id: bytes
    """The call the candidate belongs to."""
    sdp_mid: str
    """The media stream identification tag the candidate is for."""
    sdp_mline_index: int
    """The index of that media description in the SDP."""
    candidate: str
    """The ``candidate:`` attribute value (RFC 8839 section 5.1), or empty for end of candidates."""

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)

    @property
    def end_of_candidates(self) -> bool:
        """True if this marks the end of the sender's candidates."""
        return not self.candidate

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        call_id = buf.pull_bytes(CALL_ID_SIZE)
        mid = buf.pull_str(_MAX_MID, "sdp_mid")
        index = buf.pull_uint16()
        return cls(call_id, mid, index, buf.pull_str(_MAX_CANDIDATE, "candidate"))

    def push(self, buf: Buffer) -> None:
        buf.push_bytes(self.call_id)
        buf.push_str(self.sdp_mid, _MAX_MID, "sdp_mid")
        buf.push_uint16(self.sdp_mline_index)
        buf.push_str(self.candidate, _MAX_CANDIDATE, "candidate")


@dataclass(frozen=True, slots=True)
class Ringing:
    """The callee got the offer and is alerting its user."""

    TYPE: ClassVar[int] = 4
    call_id: bytes
    """The call that rings."""

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(buf.pull_bytes(CALL_ID_SIZE))

    def push(self, buf: Buffer) -> None:
        buf.push_bytes(self.call_id)


@dataclass(frozen=True, slots=True)
class Hangup:
    """The sender ends (or refuses) the call."""

    TYPE: ClassVar[int] = 5
    call_id: bytes
    """The call that ends."""
    reason: HangupReason
    """Why."""
    detail: str = ""
    """Free text for logs, at most 256 bytes."""

    def __post_init__(self) -> None:
        _check_call_id(self.call_id)

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        call_id = buf.pull_bytes(CALL_ID_SIZE)
        code = buf.pull_uint8()
        reason = HangupReason(code) if code in HangupReason._value2member_map_ else HangupReason.UNKNOWN
        return cls(call_id, reason, buf.pull_str(_MAX_DETAIL, "detail"))

    def push(self, buf: Buffer) -> None:
        buf.push_bytes(self.call_id)
        buf.push_uint8(int(self.reason))
        buf.push_str(self.detail, _MAX_DETAIL, "detail")


SignalMessage = Offer | Answer | IceCandidate | Ringing | Hangup
"""Any message of ``auralink/signal/1``."""

CODEC = MessageCodec(SIGNAL_PROTOCOL, [Offer, Answer, IceCandidate, Ringing, Hangup], max_size=MAX_SDP + 64)
"""Frames to messages and back for :data:`SIGNAL_PROTOCOL`."""
