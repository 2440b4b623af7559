"""AuraIDs and the Ed25519 keys behind them.

Theory of operation
-------------------
An identity is an Ed25519 key pair (PyNaCl). Its *AuraID* is the public key itself, written
out so that a human can copy it and a program can check it:

``AuraID = z-base-32( public_key[32] || checksum[3] )``, where
``checksum = BLAKE2b(public_key, digest_size=3, person=b"auralink-id-v1")``.

The 35 bytes (280 bits) make exactly 56 characters of z-base-32, the lower-case alphabet that
pkarr and Tahoe-LAFS use because it avoids easily confused glyphs. The AuraID is
*self-certifying*: whoever holds the matching secret key can prove they own it, and nobody
needs a registry to check. The 24-bit checksum catches typos: a mistyped AuraID passes with a
chance of 1 in 16.7 million, and parsing tells the user to copy the ID again.

Signatures are domain-separated. :meth:`Identity.sign` never signs caller bytes as they are; it
signs ``b"auralink-sig-v1\\0" + domain + b"\\0" + message``, so a signature made for one
purpose (a node record, a key rotation, a handshake challenge) can never be replayed as
another.

This module is a pure core: no I/O, no clocks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import nacl.exceptions
import nacl.signing

from auralink.errors import InvalidAuraID, LocalProtocolError, SignatureError

__all__ = ["PUBLIC_KEY_SIZE", "SIGNATURE_SIZE", "AuraID", "Identity", "verify_signature"]

PUBLIC_KEY_SIZE = 32
"""Bytes in an Ed25519 public key."""
SIGNATURE_SIZE = 64
"""Bytes in an Ed25519 signature."""

_ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"
_ZBASE32_INDEX = {c: i for i, c in enumerate(_ZBASE32)}
_CHECKSUM_SIZE = 3
_ID_CHARS = (PUBLIC_KEY_SIZE + _CHECKSUM_SIZE) * 8 // 5  # 56
_SIG_CONTEXT = b"auralink-sig-v1\x00"


def _checksum(public_key: bytes) -> bytes:
    return hashlib.blake2b(public_key, digest_size=_CHECKSUM_SIZE, person=b"auralink-id-v1").digest()


def _zbase32_encode(data: bytes) -> str:
    value = int.from_bytes(data, "big")
    chars = len(data) * 8 // 5
    return "".join(_ZBASE32[(value >> (5 * (chars - 1 - i))) & 0x1F] for i in range(chars))


def _zbase32_decode(text: str) -> bytes:
    value = 0
    for position, char in enumerate(text):
        digit = _ZBASE32_INDEX.get(char)
        if digit is None:
            raise InvalidAuraID(
                f"invalid AuraID: character {char!r} at position {position + 1} is not used in AuraIDs "
                "(z-base-32 has no 0, l, v or 2); check for a typo"
            )
        value = (value << 5) | digit
    return value.to_bytes(len(text) * 5 // 8, "big")


@dataclass(frozen=True, slots=True, order=True)
class AuraID:
    """The self-certifying identifier of one Ed25519 public key."""

    public_key: bytes
    """The 32-byte Ed25519 public key."""

    SIZE: ClassVar[int] = PUBLIC_KEY_SIZE

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, bytes) or len(self.public_key) != PUBLIC_KEY_SIZE:
            raise InvalidAuraID(f"an AuraID is built from a {PUBLIC_KEY_SIZE}-byte Ed25519 public key")

    @classmethod
    def parse(cls, text: str) -> AuraID:
        """Parse the 56-character form; raises :class:`InvalidAuraID` with a fix-it hint."""
        if not isinstance(text, str):
            raise InvalidAuraID(f"an AuraID is a string, not {type(text).__name__}")
        cleaned = text.strip().lower()
        if len(cleaned) != _ID_CHARS:
            raise InvalidAuraID(
                f"invalid AuraID: expected {_ID_CHARS} characters, got {len(cleaned)}; "
                "copy it again from `auralink-node id show`"
            )
        raw = _zbase32_decode(cleaned)
        public_key, checksum = raw[:PUBLIC_KEY_SIZE], raw[PUBLIC_KEY_SIZE:]
        if _checksum(public_key) != checksum:
            raise InvalidAuraID(
                "invalid AuraID: checksum mismatch, so at least one character is mistyped; "
                "copy it again from `auralink-node id show`"
            )
        return cls(public_key)

    def __str__(self) -> str:
        return _zbase32_encode(self.public_key + _checksum(self.public_key))

    def __repr__(self) -> str:
        return f"AuraID({self.short()})"

    def short(self) -> str:
        """The first 10 characters, for logs and tables (not unique; never parse it)."""
        return str(self)[:10]

    def dht_key(self) -> bytes:
        """The 20-byte Kademlia key under which this identity's node record is stored."""
        return hashlib.blake2b(self.public_key, digest_size=20, person=b"auralink-dht-id").digest()


def _signed_message(domain: str, message: bytes) -> bytes:
    if not domain or "\x00" in domain:
        raise LocalProtocolError("a signature domain is a non-empty string without NUL")
    return _SIG_CONTEXT + domain.encode("ascii") + b"\x00" + message


def verify_signature(aura_id: AuraID, domain: str, message: bytes, signature: bytes) -> None:
    """Check that ``aura_id``'s key signed ``message`` for ``domain``; raise :class:`SignatureError` if not."""
    if len(signature) != SIGNATURE_SIZE:
        raise SignatureError(f"a signature is {SIGNATURE_SIZE} bytes, got {len(signature)}")
    try:
        nacl.signing.VerifyKey(aura_id.public_key).verify(_signed_message(domain, message), signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
        raise SignatureError(f"signature by {aura_id.short()} does not verify for {domain!r}") from exc


class Identity:
    """A secret Ed25519 key and the AuraID it proves. Never printed, never logged."""

    __slots__ = ("_aura_id", "_signing_key")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key
        self._aura_id = AuraID(bytes(signing_key.verify_key))

    @classmethod
    def generate(cls) -> Identity:
        """Create a fresh identity from the operating system's random source."""
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Rebuild an identity from its 32-byte secret seed (used by the keystore and test vectors)."""
        if len(seed) != 32:
            raise LocalProtocolError("an Ed25519 seed is 32 bytes")
        return cls(nacl.signing.SigningKey(seed))

    @property
    def aura_id(self) -> AuraID:
        """The public, self-certifying identifier of this key."""
        return self._aura_id

    @property
    def seed(self) -> bytes:
        """The 32-byte secret seed. Handle with care: only the keystore should need it."""
        return bytes(self._signing_key)

    def sign(self, domain: str, message: bytes) -> bytes:
        """Sign ``message`` for one purpose, named by ``domain``; returns the 64-byte signature."""
        return bytes(self._signing_key.sign(_signed_message(domain, message)).signature)

    def __repr__(self) -> str:
        return f"Identity({self._aura_id.short()})"
