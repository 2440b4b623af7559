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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from auralink.identity import AuraID
from auralink.wire import Buffer, MessageCodec

__all__ = [
    "CODEC",
    "MAX_PACKET",
    "MAX_TOKEN",
    "RELAY_PROTOCOL",
    "Deliver",
    "Hello",
    "PeerGone",
    "Send",
    "Welcome",
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

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(buf.pull_length_prefixed(MAX_TOKEN, "token"))

    def push(self, buf: Buffer) -> None:
        buf.push_length_prefixed(self.token, MAX_TOKEN, "token")


@dataclass(frozen=True, slots=True)
class Welcome:
    """Relay to node: the session is open, with these limits."""

    TYPE: ClassVar[int] = 2
    bytes_per_second: int
    """The node's relayed-traffic budget (token bucket rate)."""
    max_peers: int
    """How many distinct peers the node may reach through the relay at once."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(buf.pull_varint(), buf.pull_varint())

    def push(self, buf: Buffer) -> None:
        buf.push_varint(self.bytes_per_second)
        buf.push_varint(self.max_peers)


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


CODEC = MessageCodec(RELAY_PROTOCOL, [Hello, Welcome, Send, Deliver, PeerGone], max_size=MAX_PACKET + 64)
"""Encodes and decodes relay messages as :mod:`auralink.wire` frames."""
