"""The keystore: one file that holds an identity's secret key.

Theory of operation
-------------------
The file is JSON, so an operator can see what it is, and it has mode 0600::

    {"format": "auralink-keystore", "version": 1,
     "aura_id": "<56 chars>",                      # public: `id show` needs no passphrase
     "secret": {"seed": "<base64>"}                 # plain, or sealed:
     "secret": {"kdf": "argon2id", "opslimit": N, "memlimit": N,
                "salt": "<base64>", "box": "<base64 SecretBox(nonce|ciphertext)>"},
     "rotations": ["<base64 KeyRotation record>", ...]}

A sealed key is encrypted with XSalsa20-Poly1305 (``nacl.secret.SecretBox``) under a key
derived from the passphrase with argon2id (``nacl.pwhash``). The KDF limits are stored, so
stronger settings can be chosen later without breaking old files, and they are bounded on
read, so a corrupt file cannot make us allocate gigabytes.

Loading refuses a file that other users can read (and says to ``chmod 600`` it), a wrong
passphrase, and a corrupt file, each with its own :class:`~auralink.errors.KeystoreError`.
After decrypting, the seed must produce the stored AuraID, which catches silent corruption.
Writes are atomic (temporary file, fsync, rename), so a crash never leaves a torn key.

The file also keeps the identity's history of :class:`~auralink.identity.records.KeyRotation`
records, which are public and let peers who pinned an old key follow it to the current one.
"""

from __future__ import annotations

import base64
import binascii
import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from auralink._files import atomic_write
from auralink.errors import (
    AuralinkError,
    KeystoreCorrupt,
    KeystoreError,
    KeystoreExists,
    KeystorePermissionError,
    WrongPassphrase,
)
from auralink.identity.keys import AuraID, Identity
from auralink.identity.records import KeyRotation, decode_record

__all__ = ["KdfLimits", "Keystore"]

_FORMAT = "auralink-keystore"
_VERSION = 1
_MAX_FILE = 256 * 1024


@dataclass(frozen=True, slots=True)
class KdfLimits:
    """Cost settings of the argon2id passphrase hash (see libsodium's ``crypto_pwhash``)."""

    opslimit: int = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
    """Number of passes."""
    memlimit: int = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
    """Bytes of memory."""

    @classmethod
    def fastest(cls) -> KdfLimits:
        """The cheapest settings libsodium allows: for tests only, never for real keys."""
        return cls(nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)

    def _check(self, path: Path) -> None:
        ok_ops = nacl.pwhash.argon2id.OPSLIMIT_MIN <= self.opslimit <= nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE
        ok_mem = nacl.pwhash.argon2id.MEMLIMIT_MIN <= self.memlimit <= nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE
        if not (ok_ops and ok_mem):
            raise KeystoreCorrupt(f"{path}: passphrase KDF settings are out of range", str(path))


class Keystore:
    """The key file at ``path``. Constructing it touches nothing on disk."""

    def __init__(self, path: Path | str, *, kdf: KdfLimits | None = None) -> None:
        self.path = Path(path)
        self._kdf = kdf or KdfLimits()

    def exists(self) -> bool:
        """True if a key file is present (it may still be unreadable)."""
        return self.path.exists()

    # -- reading ---------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        try:
            info = self.path.stat()
        except FileNotFoundError as exc:
            raise KeystoreError(
                f"no identity at {self.path}; create one with `auralink-node init`", str(self.path)
            ) from exc
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeystorePermissionError(
                f"{self.path} is readable by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"fix it with `chmod 600 {self.path}`",
                str(self.path),
            )
        if info.st_size > _MAX_FILE:
            raise self._corrupt(f"file is {info.st_size} bytes, larger than any keystore")
        try:
            document = json.loads(self.path.read_bytes())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._corrupt("not valid JSON") from exc
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise self._corrupt("not an AuraLink keystore")
        if document.get("version") != _VERSION:
            raise self._corrupt(f"keystore version {document.get('version')!r} is not supported")
        return document

    def _corrupt(self, why: str) -> KeystoreCorrupt:
        return KeystoreCorrupt(
            f"{self.path} is corrupt ({why}); restore it from a backup, or make a new identity "
            "with `auralink-node init --force`",
            str(self.path),
        )

    def aura_id(self) -> AuraID:
        """The identity's public AuraID; needs no passphrase."""
        return self._stored_id(self._read())

    def _stored_id(self, document: dict[str, Any]) -> AuraID:
        try:
            return AuraID.parse(str(document["aura_id"]))
        except (KeyError, AuralinkError) as exc:
            raise self._corrupt("bad or missing aura_id") from exc

    def is_sealed(self) -> bool:
        """True if the secret key is sealed with a passphrase."""
        secret = self._read().get("secret")
        return isinstance(secret, dict) and "box" in secret

    def rotations(self) -> tuple[KeyRotation, ...]:
        """The key rotations this identity went through, oldest first."""
        return self._rotations(self._read())

    def _rotations(self, document: dict[str, Any]) -> tuple[KeyRotation, ...]:
        out = []
        raw = document.get("rotations", [])
        if not isinstance(raw, list):
            raise self._corrupt("rotations is not a list")
        for item in raw:
            try:
                record = decode_record(_b64decode(item))
            except (AuralinkError, ValueError) as exc:
                raise self._corrupt("a stored key rotation does not decode") from exc
            if not isinstance(record, KeyRotation):
                raise self._corrupt("a stored rotation is another kind of record")
            out.append(record)
        return tuple(out)

    def load(self, passphrase: bytes | None = None) -> Identity:
        """Open the key; a sealed key needs its ``passphrase``."""
        document = self._read()
        expected = self._stored_id(document)
        secret = document.get("secret")
        if not isinstance(secret, dict):
            raise self._corrupt("missing secret")
        try:
            seed = self._unseal(secret, passphrase) if "box" in secret else _b64decode(secret["seed"])
            identity = Identity.from_seed(seed)
        except (WrongPassphrase, KeystoreCorrupt):
            raise
        except (KeyError, ValueError, TypeError, AuralinkError) as exc:
            raise self._corrupt("the secret key is malformed") from exc
        if identity.aura_id != expected:
            raise self._corrupt("the secret key does not match the stored AuraID")
        return identity

    def _unseal(self, secret: dict[str, Any], passphrase: bytes | None) -> bytes:
        if passphrase is None:
            raise WrongPassphrase(
                f"{self.path} is sealed with a passphrase; provide it (CLI: --passphrase-file FILE)", str(self.path)
            )
        if secret.get("kdf") != "argon2id":
            raise self._corrupt(f"unknown kdf {secret.get('kdf')!r}")
        limits = KdfLimits(int(secret["opslimit"]), int(secret["memlimit"]))
        limits._check(self.path)
        key = _derive(passphrase, _b64decode(secret["salt"]), limits)
        try:
            return bytes(nacl.secret.SecretBox(key).decrypt(_b64decode(secret["box"])))
        except nacl.exceptions.CryptoError as exc:
            raise WrongPassphrase(f"wrong passphrase for {self.path}", str(self.path)) from exc

    # -- writing ---------------------------------------------------------------------
    def create(self, identity: Identity, *, passphrase: bytes | None = None, force: bool = False) -> None:
        """Write a new key file; refuses to replace an existing one unless ``force``."""
        if self.exists() and not force:
            raise KeystoreExists(
                f"an identity already exists at {self.path}; nothing was changed (use --force to replace it)",
                str(self.path),
            )
        self._write(identity, passphrase, rotations=())

    def rotate(self, *, now: float, passphrase: bytes | None = None) -> tuple[Identity, KeyRotation]:
        """Replace the key by a new one and record a :class:`KeyRotation` signed by both."""
        document = self._read()
        secret = document.get("secret")
        if passphrase is not None and not (isinstance(secret, dict) and "box" in secret):
            raise KeystoreError(
                f"{self.path} is not sealed with a passphrase; rotate without one (sealing an existing key "
                "is not done implicitly)",
                str(self.path),
            )
        old = self.load(passphrase)
        rotations = self._rotations(document)
        new = Identity.generate()
        rotation = KeyRotation.create(old, new, seq=len(rotations) + 1, issued_at=int(now))
        self._write(new, passphrase, rotations=(*rotations, rotation))
        return new, rotation

    def _write(self, identity: Identity, passphrase: bytes | None, rotations: tuple[KeyRotation, ...]) -> None:
        if passphrase is None:
            secret: dict[str, Any] = {"seed": _b64encode(identity.seed)}
        else:
            salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
            box = nacl.secret.SecretBox(_derive(passphrase, salt, self._kdf)).encrypt(identity.seed)
            secret = {
                "kdf": "argon2id",
                "opslimit": self._kdf.opslimit,
                "memlimit": self._kdf.memlimit,
                "salt": _b64encode(salt),
                "box": _b64encode(bytes(box)),
            }
        document = {
            "format": _FORMAT,
            "version": _VERSION,
            "aura_id": str(identity.aura_id),
            "secret": secret,
            "rotations": [_b64encode(r.encode()) for r in rotations],
        }
        atomic_write(self.path, (json.dumps(document, indent=2) + "\n").encode(), mode=0o600)


def _derive(passphrase: bytes, salt: bytes, limits: KdfLimits) -> bytes:
    if len(salt) != nacl.pwhash.argon2id.SALTBYTES:
        raise ValueError("bad salt length")
    return bytes(
        nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, opslimit=limits.opslimit, memlimit=limits.memlimit
        )
    )


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError("bad base64") from exc
