"""Signed records: where a node is, who holds a handle, and which key replaced which.

Theory of operation
-------------------
Three kinds of record travel through the DHT, mDNS and the identify protocol. Each is signed
by the key it speaks for, so it can be relayed by anyone and checked by everyone:

* :class:`NodeRecord`: an AuraID's direct addresses, home relays and protocols.
* :class:`HandleClaim`: "the key with this AuraID holds ``@name.aura``".
* :class:`KeyRotation`: "the old key hands over to the new key", signed by the old key and
  countersigned by the new one (so nobody can rotate *to* a key they do not hold).

Encoding (all integers big-endian, varints as in RFC 9000 section 16)::

    record    = kind u8 | version u8 | body | signature[64] (| new_signature[64] for rotations)
    NodeRecord body   = aura_id[32] | seq u64 | issued_at u64 | expires_at u64
                        | n varint | address*n | n varint | (aura_id[32] address)*n
                        | n varint | (len varint, ascii)*n
    HandleClaim body  = aura_id[32] | seq u64 | issued_at u64 | expires_at u64 | len varint, handle
    KeyRotation body  = old[32] | new[32] | seq u64 | issued_at u64

Times are whole Unix seconds. The encoding is canonical: decoding is strict (shortest varints,
canonical handles, no duplicates, no trailing bytes), so every record has exactly one byte
form, and a signature covers exactly ``kind | version | body``. Signatures are
domain-separated (``record/node``, ``record/handle``, ``record/rotation/old``,
``record/rotation/new``) so that one kind can never pass for another. A record encodes to at
most :data:`RECORD_MAX_SIZE` bytes, which keeps it inside one UDP datagram and one DHT value.

``verify(now)`` rejects, in this order: a record for another key than the one expected, a bad
signature, one issued further in the future than the allowed clock skew, and an expired one.
Among valid records about the same subject, the higher ``seq`` wins (:meth:`supersedes`); equal
``seq`` breaks the tie by the encoded bytes, so every replica converges on the same record.

This module is a pure core: ``now`` is always an argument.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from auralink.errors import (
    IdentityError,
    InvalidHandle,
    LocalProtocolError,
    RecordExpired,
    RecordFromFuture,
    RecordLifetimeTooLong,
    RecordTooLarge,
    SignatureError,
)
from auralink.identity.handles import parse_handle
from auralink.identity.keys import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, AuraID, Identity, verify_signature
from auralink.wire.address import Address, pull_address, push_address
from auralink.wire.buffer import Buffer, BufferReadError

__all__ = [
    "MAX_ADDRESSES",
    "MAX_CLOCK_SKEW",
    "MAX_LIFETIME",
    "MAX_PROTOCOLS",
    "MAX_RELAYS",
    "MAX_ROTATION_CHAIN",
    "RECORD_MAX_SIZE",
    "RECORD_VERSION",
    "HandleClaim",
    "KeyRotation",
    "NodeRecord",
    "Record",
    "RecordKind",
    "RelayAddress",
    "decode_record",
    "follow_rotations",
    "handle_dht_key",
    "pull_record",
    "push_record",
    "rotation_dht_key",
]

RECORD_MAX_SIZE = 1000
"""Most bytes any encoded record may take."""
RECORD_VERSION = 1
"""The record format version this build writes and reads."""
MAX_CLOCK_SKEW = 120.0
"""Seconds a record's ``issued_at`` may lie ahead of the verifier's clock."""
MAX_ADDRESSES = 16
"""Most direct addresses in one node record."""
MAX_RELAYS = 4
"""Most home relays in one node record."""
MAX_PROTOCOLS = 16
"""Most protocol names in one node record."""
MAX_PROTOCOL_NAME = 64
"""Longest protocol name, in bytes."""
MAX_ROTATION_CHAIN = 32
"""Longest chain of key rotations a verifier follows."""
MAX_LIFETIME = 30 * 24 * 3600
"""Longest a node record or handle claim may be valid (30 days): holders renew, squatters lapse."""

_U64_MAX = (1 << 64) - 1


class RecordKind(IntEnum):
    """The first byte of every encoded record."""

    NODE = 1
    HANDLE = 2
    ROTATION = 3


@dataclass(frozen=True, slots=True)
class RelayAddress:
    """A relay a node can be reached through: its AuraID and where it listens."""

    aura_id: AuraID
    """The relay's identity, checked when connecting to it."""
    address: Address
    """Where the relay listens."""

    def __str__(self) -> str:
        return f"{self.aura_id}@{self.address}"


def _dht_key(person: bytes, subject: bytes) -> bytes:
    return hashlib.blake2b(subject, digest_size=20, person=person).digest()


def rotation_dht_key(old: AuraID) -> bytes:
    """The 20-byte DHT key under which the rotation away from the key ``old`` is stored."""
    return _dht_key(b"auralink-dht-rot", old.public_key)


def handle_dht_key(handle: str) -> bytes:
    """The 20-byte DHT key under which claims to ``handle`` are stored (any accepted spelling)."""
    return _dht_key(b"auralink-dht-hdl", parse_handle(handle).encode("ascii"))


def _check_times(seq: int, issued_at: int, expires_at: int | None) -> None:
    for name, value in (("seq", seq), ("issued_at", issued_at), ("expires_at", expires_at)):
        if value is not None and (not isinstance(value, int) or not 0 <= value <= _U64_MAX):
            raise LocalProtocolError(f"{name} must be an integer from 0 to 2**64-1, got {value!r}")
    if expires_at is not None and expires_at <= issued_at:
        raise LocalProtocolError("expires_at must be later than issued_at")
    if expires_at is not None and expires_at - issued_at > MAX_LIFETIME:
        raise LocalProtocolError(f"a record may be valid for at most {MAX_LIFETIME} s; renew it before it expires")


def _check_fresh(subject: str, issued_at: int, expires_at: int | None, now: float, skew: float) -> None:
    if expires_at is not None and expires_at - issued_at > MAX_LIFETIME:
        raise RecordLifetimeTooLong(
            f"{subject} is valid for {expires_at - issued_at} s, over the {MAX_LIFETIME} s limit"
        )
    if issued_at > now + skew:
        raise RecordFromFuture(
            f"{subject} was issued {issued_at - now:.0f} s in the future (allowed skew {skew:.0f} s); "
            "check the clocks of both machines"
        )
    if expires_at is not None and expires_at <= now:
        raise RecordExpired(f"{subject} expired {now - expires_at:.0f} s ago")


def _header(kind: RecordKind) -> Buffer:
    buf = Buffer()
    buf.push_uint8(kind)
    buf.push_uint8(RECORD_VERSION)
    return buf


def _finish(tbs: bytes, *signatures: bytes) -> bytes:
    data = tbs + b"".join(signatures)
    if len(data) > RECORD_MAX_SIZE:
        raise RecordTooLarge(len(data), RECORD_MAX_SIZE)
    return data


def _pull_aura_id(buf: Buffer) -> AuraID:
    return AuraID(buf.pull_bytes(PUBLIC_KEY_SIZE))


def _pull_times(buf: Buffer, with_expiry: bool) -> tuple[int, int, int | None]:
    seq, issued_at = buf.pull_uint64(), buf.pull_uint64()
    expires_at = buf.pull_uint64() if with_expiry else None
    if expires_at is not None and expires_at <= issued_at:
        raise BufferReadError("record expires before it was issued")
    return seq, issued_at, expires_at


def _unique(items: tuple[object, ...], what: str) -> None:
    if len(set(items)) != len(items):
        raise LocalProtocolError(f"duplicate {what} in record")


class _SignedRecord:
    """What every record kind shares: canonical encoding and "the higher seq wins"."""

    __slots__ = ()
    seq: int
    signature: bytes
    _signed: bytes

    def _to_be_signed(self) -> bytes:
        raise NotImplementedError

    def _signed_bytes(self) -> bytes:
        # A decoded record keeps the exact bytes it arrived as (strict decoding makes them equal
        # to a re-encoding); anything else encodes afresh. ``dataclasses.replace`` resets it.
        return self._signed or self._to_be_signed()

    def _signatures(self) -> tuple[bytes, ...]:
        return (self.signature,)

    def encode(self) -> bytes:
        """The canonical bytes: what is signed, then the signature(s)."""
        return _finish(self._signed_bytes(), *self._signatures())

    def dht_key(self) -> bytes:
        """The 20-byte DHT key this record is stored under."""
        raise NotImplementedError

    def supersedes(self, other: Record) -> bool:
        """True if this record should replace ``other``: same kind and subject, higher seq."""
        if type(self) is not type(other) or self.dht_key() != other.dht_key():
            return False
        if self.seq != other.seq:
            return self.seq > other.seq
        return self.encode() > other.encode()


class _OwnedRecord(_SignedRecord):
    """A record signed by the ``aura_id`` it names, valid until ``expires_at``."""

    __slots__ = ()
    aura_id: AuraID
    issued_at: int
    expires_at: int
    DOMAIN: ClassVar[str]

    def _subject(self) -> str:
        raise NotImplementedError

    def verify(self, now: float, *, expected: AuraID | None = None, skew: float = MAX_CLOCK_SKEW) -> None:
        """Raise unless this record is genuine, signed by ``expected`` (if given), and valid at ``now``."""
        if expected is not None and expected != self.aura_id:
            raise SignatureError(f"{self._subject()} is signed by {self.aura_id.short()}, expected {expected.short()}")
        verify_signature(self.aura_id, self.DOMAIN, self._signed_bytes(), self.signature)
        _check_fresh(self._subject(), self.issued_at, self.expires_at, now, skew)


@dataclass(frozen=True, slots=True)
class NodeRecord(_OwnedRecord):
    """Where an AuraID can be reached, signed by that AuraID."""

    aura_id: AuraID
    """The node this record speaks for, and the key that signed it."""
    seq: int
    """Sequence number; among valid records the higher one wins."""
    issued_at: int
    """Unix seconds when the record was signed."""
    expires_at: int
    """Unix seconds after which the record is void."""
    addresses: tuple[Address, ...]
    """Direct addresses, most preferred first."""
    relays: tuple[RelayAddress, ...]
    """Home relays the node keeps a connection to."""
    protocols: tuple[str, ...]
    """ALPN names of the application protocols the node serves."""
    signature: bytes
    """Ed25519 signature over ``kind | version | body``."""
    _signed: bytes = field(default=b"", init=False, repr=False, compare=False)
    """The exact signed bytes a decoded record arrived as (empty for a record built here)."""

    KIND: ClassVar[RecordKind] = RecordKind.NODE
    DOMAIN: ClassVar[str] = "record/node"

    @classmethod
    def create(
        cls,
        identity: Identity,
        *,
        seq: int,
        issued_at: int,
        expires_at: int,
        addresses: Iterable[Address] = (),
        relays: Iterable[RelayAddress] = (),
        protocols: Iterable[str] = (),
    ) -> NodeRecord:
        """Sign a new node record; raises :class:`RecordTooLarge` if it would not fit."""
        unsigned = cls(
            identity.aura_id, seq, issued_at, expires_at, tuple(addresses), tuple(relays), tuple(protocols), b""
        )
        unsigned._validate()
        tbs = unsigned._to_be_signed()
        record = cls(*unsigned._fields(), identity.sign(cls.DOMAIN, tbs))
        record.encode()  # size check
        return record

    def _fields(self) -> tuple[AuraID, int, int, int, tuple[Address, ...], tuple[RelayAddress, ...], tuple[str, ...]]:
        return (self.aura_id, self.seq, self.issued_at, self.expires_at, self.addresses, self.relays, self.protocols)

    def _validate(self) -> None:
        _check_times(self.seq, self.issued_at, self.expires_at)
        for what, items, limit in (
            ("addresses", self.addresses, MAX_ADDRESSES),
            ("relays", self.relays, MAX_RELAYS),
            ("protocols", self.protocols, MAX_PROTOCOLS),
        ):
            if len(items) > limit:
                raise LocalProtocolError(f"a node record lists at most {limit} {what}, got {len(items)}")
            _unique(items, what)
        for address in self.addresses:
            if address.port == 0:
                raise LocalProtocolError(f"address {address} has port 0; publish the port actually bound")
        for name in self.protocols:
            if not name or not name.isascii() or not name.isprintable() or len(name) > MAX_PROTOCOL_NAME:
                raise LocalProtocolError(f"protocol name {name!r} must be 1-{MAX_PROTOCOL_NAME} printable ASCII chars")

    def _to_be_signed(self) -> bytes:
        buf = _header(self.KIND)
        buf.push_bytes(self.aura_id.public_key)
        buf.push_uint64(self.seq)
        buf.push_uint64(self.issued_at)
        buf.push_uint64(self.expires_at)
        buf.push_varint(len(self.addresses))
        for address in self.addresses:
            push_address(buf, address)
        buf.push_varint(len(self.relays))
        for relay in self.relays:
            buf.push_bytes(relay.aura_id.public_key)
            push_address(buf, relay.address)
        buf.push_varint(len(self.protocols))
        for name in self.protocols:
            buf.push_str(name, MAX_PROTOCOL_NAME, "protocol name")
        return buf.data()

    @classmethod
    def _pull_body(cls, buf: Buffer) -> NodeRecord:
        aura_id = _pull_aura_id(buf)
        seq, issued_at, expires_at = _pull_times(buf, with_expiry=True)
        assert expires_at is not None
        addresses = tuple(pull_address(buf) for _ in range(buf.pull_varint_bounded(MAX_ADDRESSES, "address count")))
        relays = tuple(
            RelayAddress(_pull_aura_id(buf), pull_address(buf))
            for _ in range(buf.pull_varint_bounded(MAX_RELAYS, "relay count"))
        )
        protocols = tuple(
            buf.pull_str(MAX_PROTOCOL_NAME, "protocol name")
            for _ in range(buf.pull_varint_bounded(MAX_PROTOCOLS, "protocol count"))
        )
        record = cls(aura_id, seq, issued_at, expires_at, addresses, relays, protocols, buf.pull_bytes(SIGNATURE_SIZE))
        try:
            record._validate()
        except LocalProtocolError as exc:
            raise BufferReadError(f"invalid node record: {exc}") from exc
        return record

    def _subject(self) -> str:
        return f"node record of {self.aura_id.short()}"

    def dht_key(self) -> bytes:
        """The DHT key this record is stored under: the hash of the public key."""
        return self.aura_id.dht_key()


@dataclass(frozen=True, slots=True)
class HandleClaim(_OwnedRecord):
    """A claim, signed by ``aura_id``, to the handle ``@name.aura``."""

    handle: str
    """The canonical handle, ``@name.aura``."""
    aura_id: AuraID
    """The key that claims the handle and signed this record."""
    seq: int
    """Sequence number; among valid claims the higher one wins."""
    issued_at: int
    """Unix seconds when the claim was signed."""
    expires_at: int
    """Unix seconds after which the claim lapses and the handle is free."""
    signature: bytes
    """Ed25519 signature over ``kind | version | body``."""
    _signed: bytes = field(default=b"", init=False, repr=False, compare=False)
    """The exact signed bytes a decoded record arrived as (empty for a record built here)."""

    KIND: ClassVar[RecordKind] = RecordKind.HANDLE
    DOMAIN: ClassVar[str] = "record/handle"

    @classmethod
    def create(cls, identity: Identity, handle: str, *, seq: int, issued_at: int, expires_at: int) -> HandleClaim:
        """Sign a claim to ``handle`` (any accepted spelling; it is normalised first)."""
        _check_times(seq, issued_at, expires_at)
        unsigned = cls(parse_handle(handle), identity.aura_id, seq, issued_at, expires_at, b"")
        return cls(*unsigned._fields(), identity.sign(cls.DOMAIN, unsigned._to_be_signed()))

    def _fields(self) -> tuple[str, AuraID, int, int, int]:
        return (self.handle, self.aura_id, self.seq, self.issued_at, self.expires_at)

    def _to_be_signed(self) -> bytes:
        buf = _header(self.KIND)
        buf.push_bytes(self.aura_id.public_key)
        buf.push_uint64(self.seq)
        buf.push_uint64(self.issued_at)
        buf.push_uint64(self.expires_at)
        buf.push_str(self.handle, 64, "handle")
        return buf.data()

    @classmethod
    def _pull_body(cls, buf: Buffer) -> HandleClaim:
        aura_id = _pull_aura_id(buf)
        seq, issued_at, expires_at = _pull_times(buf, with_expiry=True)
        assert expires_at is not None
        handle = buf.pull_str(64, "handle")
        try:
            canonical = parse_handle(handle)
        except InvalidHandle as exc:
            raise BufferReadError(f"invalid handle in claim: {exc}") from exc
        if canonical != handle:
            raise BufferReadError("handle in claim is not in canonical form")
        return cls(handle, aura_id, seq, issued_at, expires_at, buf.pull_bytes(SIGNATURE_SIZE))

    def _subject(self) -> str:
        return f"claim to {self.handle}"

    def dht_key(self) -> bytes:
        """The DHT key this claim is stored under: the hash of the canonical handle."""
        return handle_dht_key(self.handle)


@dataclass(frozen=True, slots=True)
class KeyRotation(_SignedRecord):
    """The old key hands its identity over to the new key; signed by both."""

    old: AuraID
    """The key being retired; its signature authorises the rotation."""
    new: AuraID
    """The key that takes over; its countersignature proves it is held."""
    seq: int
    """Sequence number, to order competing rotations from the same old key."""
    issued_at: int
    """Unix seconds when the rotation was signed."""
    signature: bytes
    """Signature of the old key over ``kind | version | body``."""
    new_signature: bytes
    """Signature of the new key over the same bytes, in its own domain."""
    _signed: bytes = field(default=b"", init=False, repr=False, compare=False)
    """The exact signed bytes a decoded record arrived as (empty for a record built here)."""

    KIND: ClassVar[RecordKind] = RecordKind.ROTATION
    DOMAIN: ClassVar[str] = "record/rotation/old"
    NEW_DOMAIN: ClassVar[str] = "record/rotation/new"

    @classmethod
    def create(cls, old: Identity, new: Identity, *, seq: int, issued_at: int) -> KeyRotation:
        """Sign a rotation from ``old`` to ``new`` with both keys."""
        _check_times(seq, issued_at, None)
        if old.aura_id == new.aura_id:
            raise LocalProtocolError("a key cannot rotate to itself")
        tbs = cls(old.aura_id, new.aura_id, seq, issued_at, b"", b"")._to_be_signed()
        return cls(old.aura_id, new.aura_id, seq, issued_at, old.sign(cls.DOMAIN, tbs), new.sign(cls.NEW_DOMAIN, tbs))

    def _to_be_signed(self) -> bytes:
        buf = _header(self.KIND)
        buf.push_bytes(self.old.public_key)
        buf.push_bytes(self.new.public_key)
        buf.push_uint64(self.seq)
        buf.push_uint64(self.issued_at)
        return buf.data()

    @classmethod
    def _pull_body(cls, buf: Buffer) -> KeyRotation:
        old, new = _pull_aura_id(buf), _pull_aura_id(buf)
        if old == new:
            raise BufferReadError("rotation from a key to itself")
        seq, issued_at, _ = _pull_times(buf, with_expiry=False)
        return cls(old, new, seq, issued_at, buf.pull_bytes(SIGNATURE_SIZE), buf.pull_bytes(SIGNATURE_SIZE))

    def _signatures(self) -> tuple[bytes, ...]:
        return (self.signature, self.new_signature)

    def verify(self, now: float, *, skew: float = MAX_CLOCK_SKEW) -> None:
        """Raise unless both keys signed this rotation and it is not dated in the future."""
        tbs = self._signed_bytes()
        verify_signature(self.old, self.DOMAIN, tbs, self.signature)
        verify_signature(self.new, self.NEW_DOMAIN, tbs, self.new_signature)
        _check_fresh(f"rotation of {self.old.short()}", self.issued_at, None, now, skew)

    def dht_key(self) -> bytes:
        """The DHT key this rotation is stored under: derived from the old key."""
        return rotation_dht_key(self.old)


Record = NodeRecord | HandleClaim | KeyRotation
"""Any signed record."""

_KINDS: dict[int, type[NodeRecord] | type[HandleClaim] | type[KeyRotation]] = {
    RecordKind.NODE: NodeRecord,
    RecordKind.HANDLE: HandleClaim,
    RecordKind.ROTATION: KeyRotation,
}


def push_record(buf: Buffer, record: Record) -> None:
    """Append the canonical encoding of ``record``."""
    buf.push_bytes(record.encode())


def pull_record(buf: Buffer) -> Record:
    """Read one record; raises :class:`~auralink.errors.RemoteProtocolError` on anything malformed."""
    start = buf.position
    kind = buf.pull_uint8()
    cls = _KINDS.get(kind)
    if cls is None:
        raise BufferReadError(f"unknown record kind {kind}")
    version = buf.pull_uint8()
    if version != RECORD_VERSION:
        raise BufferReadError(f"unsupported record version {version} (this build reads version {RECORD_VERSION})")
    try:
        record = cls._pull_body(buf)
    except IdentityError as exc:  # e.g. an AuraID built from bad bytes
        raise BufferReadError(f"malformed record: {exc}") from exc
    signed_end = buf.position - SIGNATURE_SIZE * len(record._signatures())
    object.__setattr__(record, "_signed", buf.data_slice(start, signed_end))
    if buf.position - start > RECORD_MAX_SIZE:
        raise BufferReadError(f"record of {buf.position - start} bytes exceeds {RECORD_MAX_SIZE}")
    return record


def decode_record(data: bytes) -> Record:
    """Decode exactly one record from ``data``; raises :class:`~auralink.errors.RemoteProtocolError` if malformed."""
    if len(data) > RECORD_MAX_SIZE:
        raise BufferReadError(f"record of {len(data)} bytes exceeds {RECORD_MAX_SIZE}")
    buf = Buffer(data)
    record = pull_record(buf)
    if not buf.eof():
        raise BufferReadError(f"{buf.remaining} trailing bytes after record")
    return record


def follow_rotations(start: AuraID, rotations: Iterable[KeyRotation], now: float) -> AuraID:
    """Walk the verified rotation chain from ``start`` and return the current key.

    Rotations that do not verify are skipped. Where one old key signed several rotations, the
    one with the highest seq counts. A cycle or a chain longer than :data:`MAX_ROTATION_CHAIN`
    raises :class:`SignatureError`.
    """
    best: dict[AuraID, KeyRotation] = {}
    for rotation in rotations:
        try:
            rotation.verify(now)
        except IdentityError:
            continue
        current = best.get(rotation.old)
        if current is None or rotation.supersedes(current):
            best[rotation.old] = rotation
    seen = {start}
    key = start
    for _ in range(MAX_ROTATION_CHAIN):
        step = best.get(key)
        if step is None:
            return key
        key = step.new
        if key in seen:
            raise SignatureError(f"key rotations from {start.short()} form a cycle")
        seen.add(key)
    raise SignatureError(f"key rotation chain from {start.short()} is longer than {MAX_ROTATION_CHAIN}")
