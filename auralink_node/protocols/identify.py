"""``auralink/identify/1``: exchange signed node records and observed addresses.

Theory of operation
-------------------
Right after a connection authenticates, the dialler opens an identify stream and sends an
:class:`Identify` message; the acceptor answers with its own. Each message carries the sender's
signed :class:`~auralink.identity.NodeRecord` (where it listens, its relays and protocols), its
signed :class:`~auralink.identity.HandleClaim` if it has a handle, and the address the sender
*observed* the receiver at, as libp2p's identify and STUN do: behind a
NAT, that observed address is the only way a node learns its public mapping.

Nothing in the message is trusted because it arrived on an authenticated connection: the
record must verify and must be signed by the connection's proven peer, or the message is a
protocol violation. The observed address is only a hint, counted per reporter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from auralink.errors import IdentityError, RemoteProtocolError
from auralink.identity import HandleClaim, NodeRecord, decode_record
from auralink.identity.records import RECORD_MAX_SIZE
from auralink.wire import Address, Buffer, MessageCodec, pull_address, push_address
from auralink_node.protocols.framing import MessageReader
from auralink_node.transport.streams import MeshStream

__all__ = ["IDENTIFY_PROTOCOL", "Identify", "PeerInfo", "exchange", "read_identify"]

IDENTIFY_PROTOCOL = "auralink/identify/1"
"""The stream protocol name."""


@dataclass(frozen=True, slots=True)
class Identify:
    """A node's signed record, and where it saw the receiver."""

    record: bytes
    """The sender's encoded, signed :class:`~auralink.identity.NodeRecord`."""
    observed: Address
    """The address the sender sees the receiver's packets come from."""
    claim: bytes = b""
    """The sender's encoded :class:`~auralink.identity.HandleClaim`, or empty if it has no handle."""

    TYPE: ClassVar[int] = 1

    @classmethod
    def pull(cls, buf: Buffer) -> Self:
        record = buf.pull_length_prefixed(RECORD_MAX_SIZE, "record")
        observed = pull_address(buf)
        return cls(record, observed, buf.pull_length_prefixed(RECORD_MAX_SIZE, "claim"))

    def push(self, buf: Buffer) -> None:
        buf.push_length_prefixed(self.record, RECORD_MAX_SIZE, "record")
        push_address(buf, self.observed)
        buf.push_length_prefixed(self.claim, RECORD_MAX_SIZE, "claim")


CODEC = MessageCodec(IDENTIFY_PROTOCOL, [Identify], max_size=2 * RECORD_MAX_SIZE + 64)


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What identify taught us about a peer, and about ourselves."""

    record: NodeRecord
    """The peer's verified node record."""
    observed: Address
    """Where the peer sees us."""
    claim: HandleClaim | None
    """The peer's verified handle claim, if it has a handle."""


async def read_identify(stream: MeshStream, now: float) -> PeerInfo:
    """Read and check the peer's :class:`Identify` (its record must be valid and its own)."""
    message = await MessageReader(stream, CODEC).expect(Identify)
    try:
        record = decode_record(message.record)
        if not isinstance(record, NodeRecord):
            raise RemoteProtocolError(f"{IDENTIFY_PROTOCOL}: expected a node record")
        record.verify(now, expected=stream.peer)
        claim = decode_record(message.claim) if message.claim else None
        if claim is not None:
            if not isinstance(claim, HandleClaim):
                raise RemoteProtocolError(f"{IDENTIFY_PROTOCOL}: expected a handle claim")
            claim.verify(now, expected=stream.peer)
    except IdentityError as exc:
        raise RemoteProtocolError(f"{IDENTIFY_PROTOCOL}: peer sent an invalid record: {exc}") from exc
    return PeerInfo(record, message.observed, claim)


async def exchange(
    stream: MeshStream, own: NodeRecord, claim: HandleClaim | None, now: float, *, initiator: bool
) -> PeerInfo:
    """Run identify on ``stream``: the initiator speaks first, the responder answers."""
    mine = CODEC.encode(Identify(own.encode(), stream.connection.remote, claim.encode() if claim else b""))
    if initiator:
        await stream.send(mine)
        info = await read_identify(stream, now)
    else:
        info = await read_identify(stream, now)
        await stream.send(mine)
    stream.write_eof()
    return info
