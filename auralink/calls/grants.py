"""Room capability grants: what one AuraID may do in one room, signed by the room's owner.

Theory of operation
-------------------
A room is named by a :class:`RoomId`: its owner's AuraID and a short name (``standup@<owner>``).
The owner is the only issuer: a :class:`Grant` says "``subject`` may do ``capabilities`` in
``room`` from ``not_before`` until ``expires_at``", signed with the owner's Ed25519 key. Because
the room id carries the owner's public key, anybody (the SFU serving the room, an auditor) checks
a grant with nothing but the grant and the room id: no registry, no token server, no shared
secret. This is LiveKit's access token in spirit (a signed, expiring list of capabilities for one
identity in one room) with the owner's identity key in place of an API secret.

Capabilities (:class:`Capability`) are bit flags, as LiveKit's ``VideoGrant`` booleans:
``JOIN`` (enter the room and see who is in), ``PUBLISH`` (send a video track), ``SUBSCRIBE``
(receive others' tracks), ``PUBLISH_DATA`` (send chat and app data) and ``ADMIN`` (mute and kick
others). Unknown bits from a newer issuer are kept (the signature covers them) and grant nothing
here.

Encoding, the same conventions as :mod:`auralink.identity.records` (big-endian integers, QUIC
varint lengths, strict decoding so that each grant has one byte form)::

    grant = version u8 (=1) | owner[32] | len varint, room name (UTF-8, 1..64 bytes)
            | subject[32] | capabilities u8 | not_before u64 | expires_at u64 | signature[64]

Times are whole Unix seconds. The signature covers everything before it, in the
domain ``room/grant`` (:meth:`~auralink.identity.Identity.sign` prefixes the domain, so a grant
signature can never pass for a record's or a handshake's). A grant is at most
:data:`GRANT_MAX_SIZE` bytes and valid for at most :data:`MAX_GRANT_LIFETIME`.

:func:`verify` checks a grant against the room it is presented for, in this order, each with
its own exception (all :class:`~auralink.errors.GrantError`): the room
(:class:`~auralink.errors.GrantMismatch`), the owner's signature
(:class:`~auralink.errors.GrantForged`), the subject if given (``GrantMismatch``), then time:
``not_before`` (with a clock skew allowance, :class:`~auralink.errors.GrantNotYetValid`) and
``expires_at`` (no allowance, :class:`~auralink.errors.GrantExpired`).
:meth:`Grant.require` then refuses a missing capability with
:class:`~auralink.errors.NotPermitted`.

This module is a pure core: ``now`` is always an argument.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from auralink.errors import (
    GrantExpired,
    GrantForged,
    GrantMismatch,
    GrantNotYetValid,
    InvalidAuraID,
    LocalProtocolError,
    NotPermitted,
    SignatureError,
)
from auralink.identity.keys import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, AuraID, Identity, verify_signature
from auralink.wire.buffer import Buffer, BufferReadError

__all__ = [
    "GRANT_DOMAIN",
    "GRANT_MAX_SIZE",
    "GRANT_VERSION",
    "MAX_GRANT_CLOCK_SKEW",
    "MAX_GRANT_LIFETIME",
    "MAX_ROOM_NAME",
    "Capability",
    "Grant",
    "RoomId",
    "decode_grant",
    "pull_grant",
    "push_grant",
    "verify",
]

GRANT_VERSION = 1
"""The grant format version this build writes and reads."""
GRANT_DOMAIN = "room/grant"
"""The signature domain of grants."""
MAX_ROOM_NAME = 64
"""Longest room name, in UTF-8 bytes."""
MAX_GRANT_LIFETIME = 30 * 24 * 3600
"""Longest a grant may be valid (30 days); issue short ones and renew them."""
MAX_GRANT_CLOCK_SKEW = 120.0
"""Seconds a grant's ``not_before`` may lie ahead of the verifier's clock."""
GRANT_MAX_SIZE = 1 + PUBLIC_KEY_SIZE + 1 + MAX_ROOM_NAME + PUBLIC_KEY_SIZE + 1 + 8 + 8 + SIGNATURE_SIZE
"""Most bytes an encoded grant takes (211)."""


class Capability(enum.IntFlag):
    """What a grant allows; combine with ``|``."""

    NONE = 0
    JOIN = 1
    """Enter the room, see the participants list, receive chat."""
    PUBLISH = 2
    """Publish a video track."""
    SUBSCRIBE = 4
    """Receive other participants' tracks."""
    PUBLISH_DATA = 8
    """Send chat and app data to the room."""
    ADMIN = 16
    """Mute and kick other participants."""

    @classmethod
    def participant(cls) -> Capability:
        """What an ordinary participant gets: join, publish, subscribe and publish data."""
        return cls.JOIN | cls.PUBLISH | cls.SUBSCRIBE | cls.PUBLISH_DATA

    def names(self) -> tuple[str, ...]:
        """The known capabilities set, lower case (``("join", "publish")``)."""
        return tuple(c.name.lower() for c in Capability if c.name and c.value and c.value & self.value)


def _check_room_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise LocalProtocolError("a room name is a non-empty string")
    if len(name.encode("utf-8")) > MAX_ROOM_NAME:
        raise LocalProtocolError(f"a room name is at most {MAX_ROOM_NAME} UTF-8 bytes")
    if not name.isprintable() or "@" in name:
        raise LocalProtocolError(f"room name {name!r} must be printable and hold no '@'")


@dataclass(frozen=True, slots=True, order=True)
class RoomId:
    """A room: its owner (the only issuer of its grants) and its name. Written ``name@owner``."""

    owner: AuraID
    """The room owner's AuraID, whose key signs every grant of the room."""
    name: str
    """The room's name, unique per owner (1..64 UTF-8 bytes, printable, no ``@``)."""

    def __post_init__(self) -> None:
        _check_room_name(self.name)

    @classmethod
    def parse(cls, text: str) -> RoomId:
        """Parse ``name@owner``; raises :class:`~auralink.errors.LocalProtocolError` if malformed."""
        name, at, owner = text.strip().rpartition("@")
        if not at:
            raise LocalProtocolError(f"a room id is name@owner-aura-id, not {text!r}")
        try:
            return cls(AuraID.parse(owner), name)
        except InvalidAuraID as exc:
            raise LocalProtocolError(f"bad owner in room id {text!r}: {exc}") from exc

    def __str__(self) -> str:
        return f"{self.name}@{self.owner}"

    def short(self) -> str:
        """``name@owner`` with the owner shortened, for logs and messages."""
        return f"{self.name}@{self.owner.short()}"

    def push(self, buf: Buffer) -> None:
        """Append ``owner[32] | name``."""
        buf.push_bytes(self.owner.public_key)
        buf.push_str(self.name, MAX_ROOM_NAME, "room name")

    @classmethod
    def pull(cls, buf: Buffer) -> RoomId:
        """Read ``owner[32] | name``; raises BufferReadError if malformed."""
        owner = AuraID(buf.pull_bytes(PUBLIC_KEY_SIZE))
        name = buf.pull_str(MAX_ROOM_NAME, "room name")
        try:
            return cls(owner, name)
        except LocalProtocolError as exc:
            raise BufferReadError(f"invalid room id: {exc}") from exc


def _check_times(not_before: int, expires_at: int) -> None:
    for what, value in (("not_before", not_before), ("expires_at", expires_at)):
        if not isinstance(value, int) or not 0 <= value < 1 << 64:
            raise LocalProtocolError(f"{what} must be an integer from 0 to 2**64-1, got {value!r}")
    if expires_at <= not_before:
        raise LocalProtocolError("a grant's expires_at must be later than its not_before")
    if expires_at - not_before > MAX_GRANT_LIFETIME:
        raise LocalProtocolError(f"a grant may be valid for at most {MAX_GRANT_LIFETIME} s; issue a new one later")


@dataclass(frozen=True, slots=True)
class Grant:
    """``subject`` may do ``capabilities`` in ``room`` from ``not_before`` to ``expires_at``; signed by the owner."""

    room: RoomId
    """The room the grant is for; its owner is the issuer."""
    subject: AuraID
    """Who may use the grant (checked against the mesh connection's proven identity)."""
    capabilities: Capability
    """What the subject may do."""
    not_before: int
    """Unix seconds from which the grant is valid."""
    expires_at: int
    """Unix seconds from which the grant is void."""
    signature: bytes
    """The owner's Ed25519 signature, domain ``room/grant``, over everything above."""

    DOMAIN: ClassVar[str] = GRANT_DOMAIN

    @classmethod
    def create(
        cls,
        owner: Identity,
        room: RoomId | str,
        subject: AuraID,
        capabilities: Capability,
        *,
        not_before: int,
        expires_at: int,
    ) -> Grant:
        """Sign a grant as ``owner``; ``room`` is a :class:`RoomId` of ``owner`` or just a name."""
        room_id = room if isinstance(room, RoomId) else RoomId(owner.aura_id, room)
        if room_id.owner != owner.aura_id:
            raise LocalProtocolError(f"only the owner of {room_id.short()} can sign its grants")
        if capabilities & 0xFF != capabilities:
            raise LocalProtocolError("capabilities fit in 8 bits")
        _check_times(not_before, expires_at)
        unsigned = cls(room_id, subject, Capability(capabilities), not_before, expires_at, b"")
        return cls(*unsigned._fields(), owner.sign(GRANT_DOMAIN, unsigned.to_be_signed()))

    @property
    def issuer(self) -> AuraID:
        """Who signed the grant: the room's owner."""
        return self.room.owner

    def _fields(self) -> tuple[RoomId, AuraID, Capability, int, int]:
        return (self.room, self.subject, self.capabilities, self.not_before, self.expires_at)

    def to_be_signed(self) -> bytes:
        """The bytes the signature covers."""
        buf = Buffer()
        buf.push_uint8(GRANT_VERSION)
        self.room.push(buf)
        buf.push_bytes(self.subject.public_key)
        buf.push_uint8(int(self.capabilities))
        buf.push_uint64(self.not_before)
        buf.push_uint64(self.expires_at)
        return buf.data()

    def encode(self) -> bytes:
        """The canonical bytes: what is signed, then the signature."""
        if len(self.signature) != SIGNATURE_SIZE:
            raise LocalProtocolError("an unsigned grant cannot be encoded; use Grant.create")
        return self.to_be_signed() + self.signature

    def allows(self, capability: Capability) -> bool:
        """True if every bit of ``capability`` is granted."""
        return capability & self.capabilities == capability

    def require(self, capability: Capability, action: str = "") -> None:
        """Raise :class:`~auralink.errors.NotPermitted` unless the grant has ``capability``."""
        if not self.allows(capability):
            needed = "|".join(capability.names()) or str(int(capability))
            raise NotPermitted(
                f"{self.subject.short()} may not {action or needed} in {self.room.short()}: "
                f"the grant lacks {needed!r} (it has {', '.join(self.capabilities.names()) or 'nothing'}); "
                "ask the room owner for a grant with it",
                self.room.short(),
                action,
                needed,
            )


def push_grant(buf: Buffer, grant: Grant) -> None:
    """Append the canonical encoding of ``grant``."""
    buf.push_bytes(grant.encode())


def pull_grant(buf: Buffer) -> Grant:
    """Read one grant; raises :class:`~auralink.errors.RemoteProtocolError` on anything malformed."""
    version = buf.pull_uint8()
    if version != GRANT_VERSION:
        raise BufferReadError(f"unsupported grant version {version} (this build reads version {GRANT_VERSION})")
    room = RoomId.pull(buf)
    subject = AuraID(buf.pull_bytes(PUBLIC_KEY_SIZE))
    capabilities = Capability(buf.pull_uint8())
    not_before, expires_at = buf.pull_uint64(), buf.pull_uint64()
    try:
        _check_times(not_before, expires_at)
    except LocalProtocolError as exc:
        raise BufferReadError(f"invalid grant: {exc}") from exc
    return Grant(room, subject, capabilities, not_before, expires_at, buf.pull_bytes(SIGNATURE_SIZE))


def decode_grant(data: bytes) -> Grant:
    """Decode exactly one grant; raises :class:`~auralink.errors.RemoteProtocolError` if malformed."""
    if len(data) > GRANT_MAX_SIZE:
        raise BufferReadError(f"grant of {len(data)} bytes exceeds {GRANT_MAX_SIZE}")
    buf = Buffer(data)
    grant = pull_grant(buf)
    if not buf.eof():
        raise BufferReadError(f"{buf.remaining} trailing bytes after grant")
    return grant


def verify(
    grant: Grant, room: RoomId, now: float, *, subject: AuraID | None = None, skew: float = MAX_GRANT_CLOCK_SKEW
) -> Grant:
    """Return ``grant`` if it is genuine, for ``room`` (and ``subject``), and valid at ``now`` (Unix seconds).

    Raises, in this order: :class:`~auralink.errors.GrantMismatch` (another room),
    :class:`~auralink.errors.GrantForged` (not signed by the room's owner),
    ``GrantMismatch`` (another subject), :class:`~auralink.errors.GrantNotYetValid` and
    :class:`~auralink.errors.GrantExpired`.
    """
    if grant.room != room:
        raise GrantMismatch(f"the grant is for room {grant.room.short()}, not {room.short()}", room.short(), "join")
    try:
        verify_signature(room.owner, GRANT_DOMAIN, grant.to_be_signed(), grant.signature)
    except SignatureError as exc:
        raise GrantForged(
            f"the grant for {grant.subject.short()} in {room.short()} is not signed by the room owner "
            f"{room.owner.short()}: it was forged or altered",
            room.short(),
        ) from exc
    if subject is not None and grant.subject != subject:
        raise GrantMismatch(
            f"the grant is for {grant.subject.short()}, but {subject.short()} presented it", room.short()
        )
    if grant.not_before > now + skew:
        raise GrantNotYetValid(
            f"the grant for {grant.subject.short()} in {room.short()} is valid only in "
            f"{grant.not_before - now:.0f} s (allowed skew {skew:.0f} s); check the clocks",
            room.short(),
        )
    if grant.expires_at <= now:
        raise GrantExpired(
            f"the grant for {grant.subject.short()} in {room.short()} expired {now - grant.expires_at:.0f} s ago; "
            "ask the room owner for a new one",
            room.short(),
        )
    return grant
