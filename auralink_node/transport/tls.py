"""Identity-bound TLS: certificates that carry the node's Ed25519 key, and checking the peer's.

Theory of operation
-------------------
There is no certificate authority. Each node makes a self-signed X.509 certificate whose
public key *is* its AuraID key (Ed25519, which aioquic accepts for TLS 1.3). During the QUIC
handshake, TLS proves that the peer holds the private key of the certificate it presented
(CertificateVerify); what TLS cannot know is whether that key is the one we wanted. That check
is ours: :func:`peer_aura_id` reads the peer's certificate key after the handshake, and the
connection adapter compares it with the AuraID that was dialled (client side) or records it as
the peer's proven identity (server side). aioquic's own chain verification is turned off
(``verify_mode=CERT_NONE``), because a self-signed certificate would never pass it and the
key comparison replaces it. Names, dates and serials in the certificate carry no meaning.

Servers ask clients for a certificate too. aioquic has no public switch for that, so the
connection subclass in :mod:`auralink_node.transport.quic` sets its internal
``_request_client_certificate`` flag, as py-libp2p does.
"""

from __future__ import annotations

import datetime

from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from auralink.identity import AuraID, Identity

__all__ = ["CertifiedKey", "make_certificate", "peer_aura_id"]

_VALIDITY = datetime.timedelta(days=3650)


class CertifiedKey:
    """A node's TLS private key and self-signed certificate, both bound to its AuraID."""

    __slots__ = ("aura_id", "certificate", "private_key")

    def __init__(self, aura_id: AuraID, certificate: x509.Certificate, private_key: ed25519.Ed25519PrivateKey) -> None:
        self.aura_id = aura_id
        self.certificate = certificate
        self.private_key = private_key

    def __repr__(self) -> str:
        return f"CertifiedKey({self.aura_id.short()})"


def make_certificate(identity: Identity, now: float) -> CertifiedKey:
    """Self-sign a certificate for ``identity``'s key; ``now`` is wall-clock Unix seconds."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes(identity.seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(identity.aura_id))])
    start = datetime.datetime.fromtimestamp(now, datetime.UTC) - datetime.timedelta(days=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(identity.aura_id.public_key[:16], "big") >> 1 or 1)
        .not_valid_before(start)
        .not_valid_after(start + _VALIDITY)
        .sign(key, None)
    )
    return CertifiedKey(identity.aura_id, certificate, key)


def peer_aura_id(connection: QuicConnection) -> AuraID | None:
    """The AuraID proven by the peer's certificate, or None if it sent none or a non-Ed25519 one."""
    tls = getattr(connection, "tls", None)
    certificate = getattr(tls, "_peer_certificate", None)
    if certificate is None:
        return None
    key = certificate.public_key()
    if not isinstance(key, ed25519.Ed25519PublicKey):
        return None
    return AuraID(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
