"""``auralink/relay/1``: the messages between a node and its relay.

Theory of operation
-------------------
A node that wants to be reachable through a relay opens one ``auralink/relay/1`` stream on its
ordinary, authenticated mesh connection to the relay, and sends :class:`Hello` (with an access
token if the relay wants one). The relay answers :class:`Welcome` with its limits and a random
session key, or resets the stream. The stream stays open for the life of the session, and then
carries only :class:`PeerGone` (relay to node: ``dst`` has no session on this relay); the
packets themselves never travel on it.

**Datagrams.** Packets travel as plain UDP datagrams on the node's own socket (the NAT mapping
of its connection to the relay): ``0x04 | tag | dst | packet`` to the relay and
``0x05 | tag | src | packet`` back, where the tag is BLAKE2b keyed with the session key of the
node at that end (:class:`DatagramKey`), and the relay also checks that a Send datagram comes
from the session's address. The packets are the end-to-end QUIC datagrams between the two
nodes: the relay sees two AuraIDs and ciphertext, nothing else. This module is a pure core:
messages, datagrams and their codecs.

An earlier version also carried packets inside the session stream (``Send`` and ``Deliver``
messages, types 3 and 4, now retired and not to be reused). That made the relay terminate QUIC
on both sides (two more encryptions per packet, and a reliable stream around an unreliable
protocol), and no relay of ours offered it any more once datagrams worked, so it is gone: a
session is datagrams or nothing.

**What the tag covers, and why that is enough.** The tag is a keyed BLAKE2b (a MAC) over the
kind byte, the peer's key, the packet's length, and the packet itself up to its first
:data:`TAGGED_PREFIX` bytes if it is a 1-RTT QUIC packet (short header: first byte ``0b01xxxxxx``),
whose protection keys come out of the handshake and are secret to the two ends. Every other
packet is covered whole: long-header QUIC packets (an Initial packet is protected with keys
anyone can derive from its header, RFC 9001 section 5.2), path probes, DHT messages. Tagging
every byte of every 1200-byte packet cost more CPU than anything else the relay does per packet
(about 3 us per tag here, two per forwarded packet), and the tail of a 1-RTT packet adds nothing
to what the tag is for:

* *Only the session's holder can use the session.* An off-path attacker never sees a tag and
  cannot compute one without the key, so it cannot forge a datagram of either kind, whatever
  part of it the tag covers. The session key travels only inside the authenticated,
  encrypted session stream.
* *An on-path attacker gains nothing new.* Having seen a datagram, it could already, with a
  full-packet tag, replay it verbatim (with the session's source address): nothing in the tag
  stops replays. With a prefix tag it can also replay it with the tail beyond the prefix
  changed. Such a copy has the same kind, peer, length, source and QUIC header as the original,
  so it costs the same quota and goes to the same node; and there QUIC rejects it, because a
  1-RTT packet is authenticated end to end with AEAD keys only the two ends hold (RFC 9001
  section 5.3), exactly as it discards the verbatim replay as a duplicate (RFC 9000 section
  12.3). A mutated copy is no stronger than a replay. The length in the tag keeps a copy from
  growing; the whole-packet tag on every other packet keeps those without secret end-to-end
  authentication (Initial packets, probes, DHT messages) from being altered in transit.
* *The relay sees only AuraIDs and ciphertext*: unchanged, the tag is on the relay's hop only.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import ClassVar, Self

from auralink.errors import LocalProtocolError, RemoteProtocolError
from auralink.identity import AuraID
from auralink.wire import Buffer, MessageCodec

__all__ = [
    "CODEC",
    "DELIVER_DATAGRAM",
    "TAGGED_PREFIX",
    "SEND_DATAGRAM",
    "SESSION_KEY_SIZE",
    "MAX_PACKET",
    "MAX_TOKEN",
    "PACKET_OFFSET",
    "PEER_SLICE",
    "RELAY_PROTOCOL",
    "DatagramKey",
    "Hello",
    "PeerGone",
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

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        return cls(buf.pull_length_prefixed(MAX_TOKEN, "token"))

    def push(self, buf: Buffer) -> None:
        buf.push_length_prefixed(self.token, MAX_TOKEN, "token")


@dataclass(frozen=True, slots=True)
class Welcome:
    """Relay to node: the session is open, with these limits and this key."""

    TYPE: ClassVar[int] = 2
    bytes_per_second: int
    """The node's relayed-traffic budget (token bucket rate)."""
    max_peers: int
    """How many distinct peers the node may reach through the relay at once."""
    session_key: bytes
    """The key that authenticates this session's relay datagrams (:data:`SESSION_KEY_SIZE` bytes)."""

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        rate, peers = buf.pull_varint(), buf.pull_varint()
        key = buf.pull_length_prefixed(SESSION_KEY_SIZE, "session key")
        if len(key) != SESSION_KEY_SIZE:
            raise RemoteProtocolError(f"a session key is {SESSION_KEY_SIZE} bytes, not {len(key)}")
        return cls(rate, peers, key)

    def push(self, buf: Buffer) -> None:
        if len(self.session_key) != SESSION_KEY_SIZE:
            raise LocalProtocolError(f"a session key is {SESSION_KEY_SIZE} bytes, not {len(self.session_key)}")
        buf.push_varint(self.bytes_per_second)
        buf.push_varint(self.max_peers)
        buf.push_length_prefixed(self.session_key, SESSION_KEY_SIZE, "session key")


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
TAGGED_PREFIX = 64
"""Bytes at the start of a 1-RTT QUIC packet that a datagram's tag covers (all of any other packet)."""
_TAG_SIZE = 16
_PEER_AT = 1 + _TAG_SIZE
_HEADER = _PEER_AT + AuraID.SIZE
_QUIC_FIXED_BIT = 0x40
_FORM_BITS = 0xC0  # the long-header bit (RFC 9000 section 17.2) and the fixed bit
_KIND_BYTES = {SEND_DATAGRAM: b"\x04", DELIVER_DATAGRAM: b"\x05"}
_LENGTHS = tuple(size.to_bytes(2, "big") for size in range(MAX_PACKET + 1))


class DatagramKey:
    """One session key, ready to tag and check relay datagrams (see the module docstring).

    It keeps a BLAKE2b state already keyed (and fed the kind byte) for each kind, so tagging a
    datagram copies a state rather than keying a new one.
    """

    __slots__ = ("_macs", "key")

    def __init__(self, key: bytes) -> None:
        if len(key) != SESSION_KEY_SIZE:
            raise LocalProtocolError(f"a session key is {SESSION_KEY_SIZE} bytes, not {len(key)}")
        self.key = key
        """The raw session key."""
        self._macs = {
            kind: hashlib.blake2b(kind_byte, key=key, digest_size=_TAG_SIZE) for kind, kind_byte in _KIND_BYTES.items()
        }

    def tag(self, kind: int, peer: bytes, packet: bytes) -> bytes:
        """The tag of a ``kind`` datagram naming ``peer`` (32 key bytes) and carrying ``packet``.

        BLAKE2b over ``kind | peer | covered | len(packet)``, keyed with the session key, where
        ``covered`` is the first :data:`TAGGED_PREFIX` bytes of a 1-RTT QUIC packet, else the
        whole packet.
        """
        mac = self._macs[kind].copy()
        size = len(packet)
        covered = (
            packet[:TAGGED_PREFIX] if size > TAGGED_PREFIX and packet[0] & _FORM_BITS == _QUIC_FIXED_BIT else packet
        )
        mac.update(peer + covered)
        mac.update(_LENGTHS[size])
        return mac.digest()

    def seal(self, kind: int, peer: bytes, packet: bytes) -> bytes:
        """The datagram ``kind | tag | peer | packet`` (``peer``: the 32 key bytes it names)."""
        if not 0 < len(packet) <= MAX_PACKET:
            raise LocalProtocolError(f"a relayed packet is 1 to {MAX_PACKET} bytes, not {len(packet)}")
        return b"".join((_KIND_BYTES[kind], self.tag(kind, peer, packet), peer, packet))

    def check(self, data: bytes) -> None:
        """Raise :class:`RemoteProtocolError` unless ``data`` is a relay datagram tagged with this key.

        Then ``data[PEER_SLICE]`` is the peer's key and ``data[PACKET_OFFSET:]`` the packet. This
        runs for every relayed packet, so it repeats :meth:`tag` inline on the datagram's bytes.
        """
        size = len(data) - _HEADER
        if not 0 < size <= MAX_PACKET:
            raise RemoteProtocolError(f"a relay datagram of {len(data)} bytes is out of range")
        mac = self._macs.get(data[0])
        if mac is None:
            raise RemoteProtocolError(f"{data[0]:#04x} is not a relay datagram")
        mac = mac.copy()
        short_header = size > TAGGED_PREFIX and data[_HEADER] & _FORM_BITS == _QUIC_FIXED_BIT
        mac.update(data[_PEER_AT : _HEADER + TAGGED_PREFIX] if short_header else data[_PEER_AT:])
        mac.update(_LENGTHS[size])
        if not hmac.compare_digest(data[1:_PEER_AT], mac.digest()):
            raise RemoteProtocolError("relay datagram with a bad tag")


PEER_SLICE = slice(_PEER_AT, _HEADER)
"""Where a checked datagram names the peer (its 32 key bytes): ``data[PEER_SLICE]``."""
PACKET_OFFSET = _HEADER
"""Where a checked datagram's packet starts: ``data[PACKET_OFFSET:]``."""


def encode_datagram(kind: int, key: bytes | DatagramKey, peer: AuraID, packet: bytes) -> bytes:
    """A relay datagram: ``kind | tag[16] | peer key[32] | packet``; the tag is keyed BLAKE2b.

    ``kind`` :data:`SEND_DATAGRAM` names the destination, :data:`DELIVER_DATAGRAM` the sender;
    ``key`` is the session key of the node that sends (Send) or receives (Deliver) it, so only
    the relay and that node can make one. Hot paths keep a :class:`DatagramKey`.
    """
    if not isinstance(key, DatagramKey):
        key = DatagramKey(key)
    return key.seal(kind, peer.public_key, packet)


def decode_datagram(data: bytes, key: bytes | DatagramKey) -> tuple[AuraID, bytes]:
    """``(peer, packet)`` of a relay datagram made with ``key``; raises :class:`RemoteProtocolError`."""
    if not isinstance(key, DatagramKey):
        key = DatagramKey(key)
    key.check(data)
    return AuraID(data[PEER_SLICE]), data[PACKET_OFFSET:]


CODEC = MessageCodec(RELAY_PROTOCOL, [Hello, Welcome, PeerGone], max_size=MAX_TOKEN + 64)
"""Encodes and decodes relay messages as :mod:`auralink.wire` frames."""
