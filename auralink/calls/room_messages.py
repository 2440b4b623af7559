"""``auralink/room/2``: the wire messages between a room participant and the SFU that serves the room.

Theory of operation
-------------------
A participant opens one mesh stream with protocol :data:`ROOM_PROTOCOL` to the node that serves
the room (the SFU) and keeps it open for as long as it is in the room. Who the participant is
comes from the mesh connection (``stream.peer``), as for ``auralink/signal/1``; what it may do
comes from the :class:`~auralink.calls.grants.Grant` it presents in :class:`Join`. Each message
is one :mod:`auralink.wire` frame.

```text
participant                                   SFU
  Join(room, grant, sdp offer)          ──▶                     (refused: Reply(0, status) and the end)
                                        ◀──   Welcome(sdp answer, capabilities, participants)
  Publish/Subscribe/SendChat/Mute/Kick(request_id, ...)  ──▶
                                        ◀──   Reply(request_id, status, slot, detail)
                                        ◀──   ParticipantJoined / ParticipantLeft / ParticipantChanged
                                        ◀──   ChatReceived / SlotChanged
                                        ◀──   Removed(reason, by, detail)   (kicked, grant expired)
  Leave()                               ──▶
```

Media does not travel on this stream: the offer in :class:`Join` sets up one
``RTCPeerConnection`` between the participant and the SFU with two *publish slots* (the first
m-line, VP8 video, and the second, Opus audio, both sent by the participant), then N video and M
audio *subscription slots* (the other m-lines, sent by the SFU). A track is named by its
:class:`TrackKind` and its slot number among the slots of that kind. Which publisher a
subscription slot carries is said by :class:`Reply` to a :class:`Subscribe` and by
:class:`SlotChanged`, so subscribing never renegotiates SDP.

Version 2 added audio: :class:`Publish`, :class:`Unpublish`, :class:`Subscribe`,
:class:`Unsubscribe` and :class:`SlotChanged` end with a :class:`TrackKind` byte, a
:class:`ParticipantInfo` flags audio publishing (bit 2), and the offer carries the audio publish
slot. Version 1 peers (video only) are not served: the protocol name changed with the layout, so
a mismatch fails at the stream's protocol negotiation instead of as a garbled message.

Every request carries a ``request_id`` (a varint the participant picks, never 0: 0 is the
join's) and gets exactly one :class:`Reply`. A refusal's :class:`Status` names its cause, and
the participant raises the matching :class:`~auralink.errors.GrantError`. Unknown status and
reason codes decode as ``UNKNOWN``, so a newer SFU can add codes. Anything malformed raises
:class:`~auralink.errors.RemoteProtocolError` from :data:`CODEC`.

This module is a pure core: no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Self

from auralink.calls.grants import GRANT_MAX_SIZE, Capability, RoomId
from auralink.calls.messages import MAX_SDP
from auralink.errors import (
    GrantError,
    GrantExpired,
    GrantForged,
    GrantMismatch,
    GrantNotYetValid,
    NotPermitted,
    RoomError,
)
from auralink.identity.keys import PUBLIC_KEY_SIZE, AuraID
from auralink.wire import Buffer, BufferReadError, MessageCodec

__all__ = [
    "CODEC",
    "MAX_CHAT",
    "MAX_PARTICIPANTS",
    "NO_SLOT",
    "ROOM_PROTOCOL",
    "ChatReceived",
    "Join",
    "Kick",
    "Leave",
    "LeaveReason",
    "Mute",
    "ParticipantChanged",
    "ParticipantInfo",
    "ParticipantJoined",
    "ParticipantLeft",
    "Publish",
    "Removed",
    "Reply",
    "RoomMessage",
    "SendChat",
    "SlotChanged",
    "Status",
    "Subscribe",
    "TrackKind",
    "Unpublish",
    "Unsubscribe",
    "Welcome",
    "error_for",
    "status_of",
]

ROOM_PROTOCOL = "auralink/room/2"
"""The mesh stream protocol between a participant and the room's SFU."""
MAX_CHAT = 4096
"""Largest chat message, in UTF-8 bytes."""
MAX_PARTICIPANTS = 256
"""Most participants a :class:`Welcome` lists."""
NO_SLOT = 0xFF
"""The slot value of a :class:`Reply` that assigns none."""
_MAX_DETAIL = 256


class Status(enum.IntEnum):
    """The outcome of a request, as carried by :class:`Reply`."""

    OK = 0
    FORGED = 1
    """The grant is not signed by the room's owner."""
    EXPIRED = 2
    """The grant has expired."""
    NOT_YET_VALID = 3
    """The grant is not valid yet."""
    MISMATCH = 4
    """The grant is for another room or another participant."""
    NOT_PERMITTED = 5
    """The grant lacks the capability, the participant is muted, or was kicked."""
    NOT_FOUND = 6
    """No such participant, or the participant does not publish."""
    BAD_REQUEST = 7
    """The request makes no sense in this state (not joined, subscribe to yourself, a bad offer...)."""
    FULL = 8
    """The room or the participant's subscription slots are full."""
    NO_SUCH_ROOM = 9
    """This node does not serve that room."""
    UNKNOWN = 255
    """A code this build does not know."""


class TrackKind(enum.IntEnum):
    """What a publish or subscription slot carries."""

    VIDEO = 0
    """VP8 video."""
    AUDIO = 1
    """Opus audio."""

    @property
    def label(self) -> str:
        """``"video"`` or ``"audio"``, as aiortc names a track's kind."""
        return self.name.lower()

    @classmethod
    def of(cls, kind: str) -> TrackKind:
        """The kind named ``kind`` (``"video"`` or ``"audio"``); ValueError for anything else."""
        try:
            return cls[kind.upper()]
        except KeyError:
            raise ValueError(f"a room track is 'audio' or 'video', not {kind!r}") from None


class LeaveReason(enum.IntEnum):
    """Why a participant left, as carried by :class:`ParticipantLeft` and :class:`Removed`."""

    LEFT = 0
    KICKED = 1
    GRANT_EXPIRED = 2
    GONE = 3
    """Its stream or connection ended without a :class:`Leave`."""
    SERVER_CLOSED = 4
    UNKNOWN = 255


def _status(code: int) -> Status:
    return Status(code) if code in Status._value2member_map_ else Status.UNKNOWN


def _reason(code: int) -> LeaveReason:
    return LeaveReason(code) if code in LeaveReason._value2member_map_ else LeaveReason.UNKNOWN


def status_of(error: RoomError) -> Status:
    """The :class:`Status` that reports ``error`` to a participant."""
    for cls, status in _ERRORS:
        if isinstance(error, cls):
            return status
    return Status.BAD_REQUEST


def error_for(status: Status, detail: str, room: str | None, action: str) -> RoomError:
    """The exception a participant raises for a refusal with ``status``."""
    for cls, code in _ERRORS:
        if code is status:
            if cls is NotPermitted:
                return NotPermitted(detail, room, action, action)
            return cls(detail, room, action)
    return RoomError(f"{action} refused ({status.name}): {detail}", room, action)


_ERRORS: tuple[tuple[type[RoomError], Status], ...] = (
    (GrantForged, Status.FORGED),
    (GrantExpired, Status.EXPIRED),
    (GrantNotYetValid, Status.NOT_YET_VALID),
    (GrantMismatch, Status.MISMATCH),
    (NotPermitted, Status.NOT_PERMITTED),
    (GrantError, Status.NOT_PERMITTED),
)


def _pull_aura_id(buf: Buffer) -> AuraID:
    return AuraID(buf.pull_bytes(PUBLIC_KEY_SIZE))


def _pull_bool(buf: Buffer, what: str) -> bool:
    value = buf.pull_uint8()
    if value > 1:
        raise BufferReadError(f"{what} must be 0 or 1, got {value}")
    return bool(value)


def _pull_kind(buf: Buffer) -> TrackKind:
    value = buf.pull_uint8()
    if value not in TrackKind._value2member_map_:
        raise BufferReadError(f"unknown track kind {value}")
    return TrackKind(value)


def _pull_request_id(buf: Buffer) -> int:
    request_id = buf.pull_varint()
    if request_id == 0:
        raise BufferReadError("request id 0 is reserved for the join")
    return request_id


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    """One participant as the others see it."""

    aura_id: AuraID
    """The participant, as proven by its mesh connection."""
    capabilities: Capability
    """What its grant allows."""
    publishing: bool = False
    """True while it publishes a video track."""
    muted: bool = False
    """True while an admin has muted it (all its tracks)."""
    publishing_audio: bool = False
    """True while it publishes an audio track."""

    def publishes(self, kind: TrackKind) -> bool:
        """True while it publishes a track of ``kind``."""
        return self.publishing_audio if kind is TrackKind.AUDIO else self.publishing

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        aura_id = _pull_aura_id(buf)
        capabilities = Capability(buf.pull_uint8())
        flags = buf.pull_uint8()
        if flags & ~0x07:
            raise BufferReadError(f"unknown participant flags {flags:#x}")
        return cls(aura_id, capabilities, bool(flags & 1), bool(flags & 2), bool(flags & 4))

    def push(self, buf: Buffer) -> None:
        buf.push_bytes(self.aura_id.public_key)
        buf.push_uint8(int(self.capabilities) & 0xFF)
        buf.push_uint8(int(self.publishing) | int(self.muted) << 1 | int(self.publishing_audio) << 2)


# -- participant to SFU ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Join:
    """Enter ``room`` with ``grant``; ``sdp`` offers the two publish slots and the subscription slots."""

    TYPE: ClassVar[int] = 1
    room: RoomId
    """The room to join."""
    grant: bytes
    """The encoded :class:`~auralink.calls.grants.Grant` (decoded and checked by the SFU)."""
    sdp: str
    """The SDP offer."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        room = RoomId.pull(buf)
        grant = buf.pull_length_prefixed(GRANT_MAX_SIZE, "grant")
        return cls(room, grant, buf.pull_str(MAX_SDP, "sdp"))

    def push(self, buf: Buffer) -> None:
        self.room.push(buf)
        buf.push_length_prefixed(self.grant, GRANT_MAX_SIZE, "grant")
        buf.push_str(self.sdp, MAX_SDP, "sdp")


@dataclass(frozen=True, slots=True)
class Publish:
    """Start publishing on the publish slot of ``kind`` (needs ``publish``)."""

    TYPE: ClassVar[int] = 2
    request_id: int
    """Names the :class:`Reply`."""
    kind: TrackKind = TrackKind.VIDEO
    """Which publish slot."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(_pull_request_id(buf), _pull_kind(buf))

    def push(self, buf: Buffer) -> None:
        buf.push_varint(self.request_id)
        buf.push_uint8(int(self.kind))


@dataclass(frozen=True, slots=True)
class Unpublish:
    """Stop publishing the track of ``kind``."""

    TYPE: ClassVar[int] = 3
    request_id: int
    """Names the :class:`Reply`."""
    kind: TrackKind = TrackKind.VIDEO
    """Which publish slot."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(_pull_request_id(buf), _pull_kind(buf))

    def push(self, buf: Buffer) -> None:
        buf.push_varint(self.request_id)
        buf.push_uint8(int(self.kind))


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Receive ``publisher``'s track of ``kind`` on a free subscription slot of that kind (needs ``subscribe``)."""

    TYPE: ClassVar[int] = 4
    request_id: int
    """Names the :class:`Reply`, which carries the slot."""
    publisher: AuraID
    """Whose track."""
    kind: TrackKind = TrackKind.VIDEO
    """Which of its tracks."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(_pull_request_id(buf), _pull_aura_id(buf), _pull_kind(buf))

    def push(self, buf: Buffer) -> None:
        buf.push_varint(self.request_id)
        buf.push_bytes(self.publisher.public_key)
        buf.push_uint8(int(self.kind))


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop receiving ``publisher``'s track of ``kind`` and free its slot."""

    TYPE: ClassVar[int] = 5
    request_id: int
    """Names the :class:`Reply`."""
    publisher: AuraID
    """Whose track."""
    kind: TrackKind = TrackKind.VIDEO
    """Which of its tracks."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(_pull_request_id(buf), _pull_aura_id(buf), _pull_kind(buf))

    def push(self, buf: Buffer) -> None:
        buf.push_varint(self.request_id)
        buf.push_bytes(self.publisher.public_key)
        buf.push_uint8(int(self.kind))


@dataclass(frozen=True, slots=True)
class SendChat:
    """Send a chat message to everybody else in the room (needs ``publish_data``)."""

    TYPE: ClassVar[int] = 6
    request_id: int
    """Names the :class:`Reply`."""
    text: str
    """The message, at most 4096 UTF-8 bytes."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(_pull_request_id(buf), buf.pull_str(MAX_CHAT, "chat text"))

    def push(self, buf: Buffer) -> None:
        buf.push_varint(self.request_id)
        buf.push_str(self.text, MAX_CHAT, "chat text")


@dataclass(frozen=True, slots=True)
class Mute:
    """Mute or unmute ``target``'s published tracks, audio and video (needs ``admin``)."""

    TYPE: ClassVar[int] = 7
    request_id: int
    """Names the :class:`Reply`."""
    target: AuraID
    """Who to mute."""
    muted: bool
    """True to mute, False to unmute."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(_pull_request_id(buf), _pull_aura_id(buf), _pull_bool(buf, "muted"))

    def push(self, buf: Buffer) -> None:
        buf.push_varint(self.request_id)
        buf.push_bytes(self.target.public_key)
        buf.push_uint8(int(self.muted))


@dataclass(frozen=True, slots=True)
class Kick:
    """Remove ``target`` from the room (needs ``admin``)."""

    TYPE: ClassVar[int] = 8
    request_id: int
    """Names the :class:`Reply`."""
    target: AuraID
    """Who to remove."""
    detail: str = ""
    """Why, shown to the kicked participant (at most 256 bytes)."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(_pull_request_id(buf), _pull_aura_id(buf), buf.pull_str(_MAX_DETAIL, "detail"))

    def push(self, buf: Buffer) -> None:
        buf.push_varint(self.request_id)
        buf.push_bytes(self.target.public_key)
        buf.push_str(self.detail, _MAX_DETAIL, "detail")


@dataclass(frozen=True, slots=True)
class Leave:
    """The participant leaves; the SFU ends the stream."""

    TYPE: ClassVar[int] = 9

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls()

    def push(self, buf: Buffer) -> None:
        pass


# -- SFU to participant ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome:
    """The join is accepted."""

    TYPE: ClassVar[int] = 16
    sdp: str
    """The SFU's SDP answer."""
    capabilities: Capability
    """What the participant's grant allows."""
    participants: tuple[ParticipantInfo, ...]
    """Everybody else already in the room."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        sdp = buf.pull_str(MAX_SDP, "sdp")
        capabilities = Capability(buf.pull_uint8())
        count = buf.pull_varint_bounded(MAX_PARTICIPANTS, "participant count")
        return cls(sdp, capabilities, tuple(ParticipantInfo.pull(buf) for _ in range(count)))

    def push(self, buf: Buffer) -> None:
        buf.push_str(self.sdp, MAX_SDP, "sdp")
        buf.push_uint8(int(self.capabilities) & 0xFF)
        buf.push_varint(len(self.participants))
        for info in self.participants:
            info.push(buf)


@dataclass(frozen=True, slots=True)
class Reply:
    """The outcome of one request (request id 0: of the join)."""

    TYPE: ClassVar[int] = 17
    request_id: int
    """The request answered."""
    status: Status
    """``OK`` or why it was refused."""
    slot: int = NO_SLOT
    """For an accepted :class:`Subscribe`: the subscription slot (0-based, among the slots of its kind)."""
    detail: str = ""
    """A human-readable reason (at most 256 bytes)."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        request_id = buf.pull_varint()
        status = _status(buf.pull_uint8())
        slot = buf.pull_uint8()
        return cls(request_id, status, slot, buf.pull_str(_MAX_DETAIL, "detail"))

    def push(self, buf: Buffer) -> None:
        buf.push_varint(self.request_id)
        buf.push_uint8(int(self.status))
        buf.push_uint8(self.slot)
        detail = self.detail.encode("utf-8")[:_MAX_DETAIL].decode("utf-8", "ignore")
        buf.push_str(detail, _MAX_DETAIL, "detail")


@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    """Somebody entered the room."""

    TYPE: ClassVar[int] = 18
    info: ParticipantInfo
    """Who, and what they may do."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(ParticipantInfo.pull(buf))

    def push(self, buf: Buffer) -> None:
        self.info.push(buf)


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    """Somebody left the room."""

    TYPE: ClassVar[int] = 19
    aura_id: AuraID
    """Who."""
    reason: LeaveReason
    """Why."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(_pull_aura_id(buf), _reason(buf.pull_uint8()))

    def push(self, buf: Buffer) -> None:
        buf.push_bytes(self.aura_id.public_key)
        buf.push_uint8(int(self.reason))


@dataclass(frozen=True, slots=True)
class ParticipantChanged:
    """Somebody started or stopped publishing a track, or was muted or unmuted."""

    TYPE: ClassVar[int] = 20
    info: ParticipantInfo
    """Their new state."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(ParticipantInfo.pull(buf))

    def push(self, buf: Buffer) -> None:
        self.info.push(buf)


@dataclass(frozen=True, slots=True)
class ChatReceived:
    """A chat message from another participant."""

    TYPE: ClassVar[int] = 21
    sender: AuraID
    """Who sent it, as proven by its mesh connection (the SFU vouches)."""
    text: str
    """The message."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(_pull_aura_id(buf), buf.pull_str(MAX_CHAT, "chat text"))

    def push(self, buf: Buffer) -> None:
        buf.push_bytes(self.sender.public_key)
        buf.push_str(self.text, MAX_CHAT, "chat text")


@dataclass(frozen=True, slots=True)
class SlotChanged:
    """A subscription slot stopped carrying its publisher's track (it left, unpublished or was kicked)."""

    TYPE: ClassVar[int] = 22
    slot: int
    """The subscription slot, now free (among the slots of ``kind``)."""
    publisher: AuraID
    """Whose track it carried."""
    kind: TrackKind = TrackKind.VIDEO
    """Which kind of slot."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(buf.pull_uint8(), _pull_aura_id(buf), _pull_kind(buf))

    def push(self, buf: Buffer) -> None:
        buf.push_uint8(self.slot)
        buf.push_bytes(self.publisher.public_key)
        buf.push_uint8(int(self.kind))


@dataclass(frozen=True, slots=True)
class Removed:
    """The SFU removed this participant from the room; the stream ends next."""

    TYPE: ClassVar[int] = 23
    reason: LeaveReason
    """``KICKED``, ``GRANT_EXPIRED`` or ``SERVER_CLOSED``."""
    by: AuraID | None = None
    """The admin who kicked, if one did."""
    detail: str = ""
    """The admin's reason, if any."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        reason = _reason(buf.pull_uint8())
        by = _pull_aura_id(buf) if _pull_bool(buf, "has_by") else None
        return cls(reason, by, buf.pull_str(_MAX_DETAIL, "detail"))

    def push(self, buf: Buffer) -> None:
        buf.push_uint8(int(self.reason))
        buf.push_uint8(int(self.by is not None))
        if self.by is not None:
            buf.push_bytes(self.by.public_key)
        buf.push_str(self.detail, _MAX_DETAIL, "detail")


RoomMessage = (
    Join
    | Publish
    | Unpublish
    | Subscribe
    | Unsubscribe
    | SendChat
    | Mute
    | Kick
    | Leave
    | Welcome
    | Reply
    | ParticipantJoined
    | ParticipantLeft
    | ParticipantChanged
    | ChatReceived
    | SlotChanged
    | Removed
)
"""Any message of ``auralink/room/2``."""

CODEC = MessageCodec(
    ROOM_PROTOCOL,
    [
        Join,
        Publish,
        Unpublish,
        Subscribe,
        Unsubscribe,
        SendChat,
        Mute,
        Kick,
        Leave,
        Welcome,
        Reply,
        ParticipantJoined,
        ParticipantLeft,
        ParticipantChanged,
        ChatReceived,
        SlotChanged,
        Removed,
    ],
    max_size=MAX_SDP + 4 * 1024 + MAX_PARTICIPANTS * (PUBLIC_KEY_SIZE + 2),
)
"""Frames to messages and back for :data:`ROOM_PROTOCOL`."""
