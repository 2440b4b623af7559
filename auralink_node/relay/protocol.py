"""``auralink/relay/1``: the messages between a node and its relay.

Theory of operation
-------------------
A node that wants to be reachable through a relay opens one ``auralink/relay/1`` stream on its
ordinary, authenticated mesh connection to the relay, and sends :class:`Hello` (with an access
token if the relay wants one). The relay answers :class:`Welcome` with its limits, or resets
the stream. From then on the stream carries opaque packets both ways:

* :class:`Send` (node to relay): ``dst`` (a 32-byte key) and one packet for it;
* :class:`Deliver` (relay to node): ``src`` (the sender's key, which the relay knows from the
  sender's own authenticated connection, so it cannot be forged) and the packet;
* :class:`PeerGone` (relay to node): ``dst`` has no session on this relay.

The packets are the end-to-end QUIC datagrams between the two nodes: the relay sees two
AuraIDs and ciphertext, nothing else. This module is a pure core: messages and their codec.

**Datagrams.** Carrying packets inside the session's stream makes the relay terminate QUIC on
both sides (two more encryptions per packet, and a reliable stream around an unreliable
protocol). So the stream only opens the session: :class:`Welcome` hands the node a random
session key, and packets then travel as plain UDP datagrams on the node's own socket,
``0x04 | tag | dst | packet`` to the relay and ``0x05 | tag | src | packet`` back, where the tag
is BLAKE2b keyed with the session key of the node at that end (:func:`encode_datagram`). The
relay also checks that a Send datagram comes from the session's address. Forged or replayed
datagrams cannot be made without the key; replayed QUIC packets are discarded by QUIC.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import ClassVar, Self

from auralink.errors import RemoteProtocolError
from auralink.identity import AuraID
from auralink.wire import Buffer, MessageCodec

__all__ = [
    "CODEC",
    "DELIVER_DATAGRAM",
    "SEND_DATAGRAM",
    "SESSION_KEY_SIZE",
    "MAX_PACKET",
    "MAX_TOKEN",
    "RELAY_PROTOCOL",
    "Deliver",
    "Hello",
    "PeerGone",
    "Send",
    "Welcome",
    "decode_datagram",
    "encode_datagram",
]

RELAY_PROTOCOL = "auralink/relay/1"
"""The stream protocol name."""
MAX_PACKET = 1500
"""Largest packet relayed: a full-size QUIC datagram on an Ethernet path."""
MAX_TOKEN = 256
"""Largest access token."""


def _pull_key(buf: Buffer) -> AuraID:
    return AuraID(buf.pull_bytes(AuraID.SIZE))


@dataclass(frozen=True, slots=True)
class Hello:
    """Node to relay: start a session (once, first)."""

    TYPE: ClassVar[int] = 1
    token: bytes = b""
    """Access token, for relays whose policy is ``token``."""
    datagrams: bool = True
    """Whether packets for this node may come as relay datagrams (else as :class:`Deliver`)."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        token = buf.pull_length_prefixed(MAX_TOKEN, "token")
        flags = buf.pull_varint()
        return cls(token, bool(flags & 1))

    def push(self, buf: Buffer) -> None:
        buf.push_length_prefixed(self.token, MAX_TOKEN, "token")
        buf.push_varint(1 if self.datagrams else 0)


@dataclass(frozen=True, slots=True)
class Welcome:
    """Relay to node: the session is open, with these limits."""

    TYPE: ClassVar[int] = 2
    bytes_per_second: int
    """The node's relayed-traffic budget (token bucket rate)."""
    max_peers: int
    """How many distinct peers the node may reach through the relay at once."""
    session_key: bytes = b""
    """The key that authenticates this session's relay datagrams (empty: the relay takes none)."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        rate, peers = buf.pull_varint(), buf.pull_varint()
        key = buf.pull_length_prefixed(SESSION_KEY_SIZE, "session key")
        if key and len(key) != SESSION_KEY_SIZE:
            raise RemoteProtocolError(f"a session key is {SESSION_KEY_SIZE} bytes, not {len(key)}")
        return cls(rate, peers, key)

    def push(self, buf: Buffer) -> None:
        buf.push_varint(self.bytes_per_second)
        buf.push_varint(self.max_peers)
        buf.push_length_prefixed(self.session_key, SESSION_KEY_SIZE, "session key")


@dataclass(frozen=True, slots=True)
class Send:
    """Node to relay: deliver ``packet`` to ``dst``."""

    TYPE: ClassVar[int] = 3
    dst: AuraID
    packet: bytes

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(_pull_key(buf), buf.pull_length_prefixed(MAX_PACKET, "packet"))

    def push(self, buf: Buffer) -> None:
        buf.push_bytes(self.dst.public_key)
        buf.push_length_prefixed(self.packet, MAX_PACKET, "packet")


@dataclass(frozen=True, slots=True)
class Deliver:
    """Relay to node: ``packet`` came from ``src``."""

    TYPE: ClassVar[int] = 4
    src: AuraID
    packet: bytes

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(_pull_key(buf), buf.pull_length_prefixed(MAX_PACKET, "packet"))

    def push(self, buf: Buffer) -> None:
        buf.push_bytes(self.src.public_key)
        buf.push_length_prefixed(self.packet, MAX_PACKET, "packet")


@dataclass(frozen=True, slots=True)
class PeerGone:
    """Relay to node: ``dst`` has no session here, so packets for it are dropped."""

    TYPE: ClassVar[int] = 5
    dst: AuraID

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(_pull_key(buf))

    def push(self, buf: Buffer) -> None:
        buf.push_bytes(self.dst.public_key)


SEND_DATAGRAM, DELIVER_DATAGRAM = 0x04, 0x05
"""First bytes of relay datagrams on the node's UDP socket: node to relay, and relay to node."""
SESSION_KEY_SIZE = 32
"""Bytes in a session key."""
_TAG_SIZE = 16
_HEADER = 1 + _TAG_SIZE + AuraID.SIZE
_KINDS = {kind: bytes([kind]) for kind in range(256)}


def _tag(key: bytes, kind: int, peer: bytes, packet: bytes | memoryview) -> bytes:
    digest = hashlib.blake2b(_KINDS[kind], key=key, digest_size=_TAG_SIZE)
    digest.update(peer)
    digest.update(packet)
    return digest.digest()


def encode_datagram(kind: int, key: bytes, peer: AuraID, packet: bytes) -> bytes:
    """A relay datagram: ``kind | tag[16] | peer key[32] | packet``; the tag is keyed BLAKE2b.

    ``kind`` :data:`SEND_DATAGRAM` names the destination, :data:`DELIVER_DATAGRAM` the sender;
    ``key`` is the session key of the node that sends (Send) or receives (Deliver) it, so only
    the relay and that node can make one.
    """
    return bytes([kind]) + _tag(key, kind, peer.public_key, packet) + peer.public_key + packet


def decode_datagram(data: bytes, key: bytes) -> tuple[AuraID, bytes]:
    """``(peer, packet)`` of a relay datagram made with ``key``; raises :class:`RemoteProtocolError`."""
    if not _HEADER < len(data) <= _HEADER + MAX_PACKET:
        raise RemoteProtocolError(f"a relay datagram of {len(data)} bytes is out of range")
    peer, packet = data[1 + _TAG_SIZE : _HEADER], data[_HEADER:]
    if not hmac.compare_digest(data[1 : 1 + _TAG_SIZE], _tag(key, data[0], peer, packet)):
        raise RemoteProtocolError("relay datagram with a bad tag")
    return AuraID(peer), packet


CODEC = MessageCodec(RELAY_PROTOCOL, [Hello, Welcome, Send, Deliver, PeerGone], max_size=MAX_PACKET + 64)
"""Encodes and decodes relay messages as :mod:`auralink.wire` frames."""
