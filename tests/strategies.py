"""Hypothesis strategies for AuraLink values, shared by the property tests."""

from __future__ import annotations

import contextlib

from hypothesis import strategies as st

from auralink.errors import RemoteProtocolError
from auralink.identity import HandleClaim, Identity, KeyRotation, NodeRecord, RelayAddress
from auralink.identity.records import MAX_LIFETIME
from auralink.wire import FrameDecoder, Message, MessageCodec
from auralink.wire.address import Address

# A handful of fixed keys: generating keys inside strategies would make shrinking useless.
IDENTITIES = [Identity.from_seed(bytes([i]) * 32) for i in range(1, 5)]

identities = st.sampled_from(IDENTITIES)
u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
addresses = st.builds(Address, st.one_of(ipv4, ipv6), st.integers(min_value=1, max_value=0xFFFF))
handle_names = st.from_regex(r"\A[a-z0-9][a-z0-9-]{1,30}[a-z0-9]\Z")
protocols = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=32)


@st.composite
def times(draw: st.DrawFn) -> tuple[int, int, int]:
    seq = draw(u64)
    issued = draw(st.integers(min_value=0, max_value=(1 << 63)))
    expires = draw(st.integers(min_value=issued + 1, max_value=issued + MAX_LIFETIME))
    return seq, issued, expires


@st.composite
def node_records(draw: st.DrawFn) -> NodeRecord:
    seq, issued, expires = draw(times())
    return NodeRecord.create(
        draw(identities),
        seq=seq,
        issued_at=issued,
        expires_at=expires,
        addresses=draw(st.lists(addresses, max_size=8, unique=True)),
        relays=draw(
            st.lists(
                st.builds(RelayAddress, identities.map(lambda i: i.aura_id), addresses),
                max_size=4,
                unique=True,
            )
        ),
        protocols=draw(st.lists(protocols, max_size=6, unique=True)),
    )


@st.composite
def handle_claims(draw: st.DrawFn) -> HandleClaim:
    seq, issued, expires = draw(times())
    return HandleClaim.create(draw(identities), draw(handle_names), seq=seq, issued_at=issued, expires_at=expires)


@st.composite
def key_rotations(draw: st.DrawFn) -> KeyRotation:
    old, new = draw(st.lists(identities, min_size=2, max_size=2, unique_by=lambda i: i.aura_id))
    return KeyRotation.create(old, new, seq=draw(u64), issued_at=draw(u64))


records = st.one_of(node_records(), handle_claims(), key_rotations())


def round_trip(codec: MessageCodec, message: Message) -> Message:
    """``message`` encoded as a frame by ``codec`` and decoded again."""
    decoder = FrameDecoder(max_size=codec.max_size)
    decoder.feed(codec.encode(message))
    frame = decoder.next_frame()
    assert frame is not None
    return codec.decode(frame)


def decode_or_protocol_error(codec: MessageCodec, data: bytes) -> None:
    """Feed ``data`` as frames of ``codec``: every message decodes, or RemoteProtocolError is raised."""
    decoder = FrameDecoder(max_size=codec.max_size)
    decoder.feed(data)
    with contextlib.suppress(RemoteProtocolError):
        while (frame := decoder.next_frame()) is not None:
            codec.decode(frame)
