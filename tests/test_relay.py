"""Relays on loopback: sessions, relayed connections, moving paths, quotas and access policy."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auralink.errors import ConnectionError_, LocalProtocolError, RemoteProtocolError
from auralink.identity import Identity, RelayAddress
from auralink.wire import FrameDecoder
from auralink_node.node import Node
from auralink_node.paths import PROBE, PROBE_ACK
from auralink_node.relay import RelayLink, TokenBucket
from auralink_node.relay.protocol import (
    CODEC,
    DELIVER_DATAGRAM,
    MAX_PACKET,
    PACKET_OFFSET,
    PEER_SLICE,
    SEND_DATAGRAM,
    TAGGED_PREFIX,
    DatagramKey,
    Hello,
    PeerGone,
    Welcome,
    decode_datagram,
    encode_datagram,
)
from auralink_node.reputation import Role
from auralink_node.transport import MeshStream
from tests.nodes import make_home, running
from tests.strategies import decode_or_protocol_error, round_trip

ECHO = "test/echo/1"


async def echo(stream: MeshStream) -> None:
    while chunk := await stream.read():
        stream.write(chunk)
        await stream.drain()
    stream.write_eof()


def relay_of(node: Node) -> RelayAddress:
    return RelayAddress(node.aura_id, node.listen_addresses[0])


async def session(node: Node, relay: Node) -> RelayLink:
    link = node.relay_link(relay_of(relay))
    await link.wait_ready(5.0)
    return link


async def echo_through(stream: MeshStream, data: bytes) -> bytes:
    async def pump() -> None:
        for i in range(0, len(data), 16384):
            stream.write(data[i : i + 16384])
            await stream.drain()
        stream.write_eof()

    writer = asyncio.ensure_future(pump())
    back = await stream.read_all(len(data) + 1)
    await writer
    return back


async def test_a_connection_through_a_relay_carries_only_ciphertext(tmp_path: Path) -> None:
    marker = b"plaintext-marker-" * 64
    async with (
        running(make_home(tmp_path, "r"), relay=True) as r,
        running(make_home(tmp_path, "b")) as b,
        running(make_home(tmp_path, "a")) as a,
    ):
        b.serve(ECHO, echo)
        await session(b, r)
        link = await session(a, r)
        assert r.relay_service is not None and set(r.relay_service.sessions) == {a.aura_id, b.aura_id}
        seen: list[bytes] = []
        forward = r.relay_service.forward
        r.relay_service.forward = lambda s, dst, packet: (seen.append(packet), forward(s, dst, packet))[1]  # type: ignore[method-assign]

        conn = await a.endpoint.connect(b.aura_id, [], [link.path_to(b.aura_id)])
        assert conn.is_relayed and conn.path == f"relay:{r.aura_id}" and conn.peer == b.aura_id
        data = marker * 200 + bytes(range(256)) * 400
        async with await conn.open_stream(ECHO) as stream:
            assert hashlib.sha256(await echo_through(stream, data)).digest() == hashlib.sha256(data).digest()
        assert r.relay_service.stats["forwarded"] > 100
        exported = r.metrics.registry.get_sample_value("auralink_relay_packets_total", {"result": "forwarded"})
        assert exported == r.relay_service.stats["forwarded"]  # read from the relay's counts at scrape time
        assert r.metrics.registry.get_sample_value("auralink_relay_bytes_total") == r.relay_service.stats["bytes"] > 0
        assert link.stats["sent"] > 100 and link.session_key  # as relay datagrams, not stream frames
        assert seen and not any(marker[:32] in packet for packet in seen)  # the relay saw ciphertext only
        # Every one a QUIC packet, or a path probe (type, random id, sender key, MAC).
        assert all(packet[0] & 0x40 or (packet[0] in (PROBE, PROBE_ACK) and len(packet) == 57) for packet in seen)
        inbound = b.endpoint.connection_to(a.aura_id)
        assert inbound is not None and inbound.is_relayed and inbound.peer == a.aura_id


async def test_a_connection_moves_between_relay_and_direct_without_losing_stream_data(tmp_path: Path) -> None:
    async with (
        running(make_home(tmp_path, "r"), relay=True) as r,
        running(make_home(tmp_path, "b")) as b,
        running(make_home(tmp_path, "a")) as a,
    ):
        b.serve(ECHO, echo)
        await session(b, r)
        link = await session(a, r)
        conn = await a.endpoint.connect(b.aura_id, [], [link.path_to(b.aura_id)])
        inbound = b.endpoint.connection_to(a.aura_id)
        assert inbound is not None
        relayed_a, relayed_b = (conn._sender, conn.remote), (inbound._sender, inbound.remote)
        direct_b, direct_a = b.listen_addresses[0], a.listen_addresses[0]
        chunk = bytes(range(256)) * 256  # 64 kB
        got = bytearray()
        async with await conn.open_stream(ECHO) as stream:
            for step in range(6):
                if step % 2:  # both ends move to the direct path, as a hole punch would let them
                    conn.set_path(a.endpoint._socket_for(direct_b), direct_b)
                    inbound.set_path(b.endpoint._socket_for(direct_a), direct_a)
                    assert conn.path == f"direct:{direct_b}"
                else:  # and back to the relay
                    conn.set_path(*relayed_a)
                    inbound.set_path(*relayed_b)
                    assert conn.is_relayed
                stream.write(chunk)
                await stream.drain()
                got += await stream.readexactly(len(chunk))
            stream.write_eof()
            assert await stream.read() == b""
        assert bytes(got) == chunk * 6
        assert not conn.is_closed and a.endpoint.connection_to(b.aura_id) is conn


async def test_dialling_a_peer_through_the_relay_its_record_lists(tmp_path: Path) -> None:
    async with (
        running(make_home(tmp_path, "r"), relay=True) as r,
        running(make_home(tmp_path, "b"), relays=(f"{r.aura_id}@{r.listen_addresses[0]}",)) as b,
        running(make_home(tmp_path, "a")) as a,
    ):
        await b.relay_links[r.aura_id].wait_ready(5.0)
        assert b.record.relays == (relay_of(r),)  # the home relay is in the record once its session is open
        unreachable = b.record.__class__.create(  # b's record, but its only address is dead
            b.identity,
            seq=b.record.seq + 1,
            issued_at=b.record.issued_at,
            expires_at=b.record.expires_at,
            addresses=[a.listen_addresses[0].__class__("127.0.0.1", 9)],
            relays=b.record.relays,
            protocols=b.record.protocols,
        )
        a.book.put(unreachable, a.wall_clock())
        report = await a.ping(b.aura_id, count=2)
        assert report.received == 2
        conn = a.endpoint.connection_to(b.aura_id)
        assert conn is not None and conn.is_relayed
        assert a.peers()[0]["path"] == f"relay:{r.aura_id}"


async def test_a_sender_over_its_quota_is_throttled_and_others_are_not(tmp_path: Path) -> None:
    async with (
        running(make_home(tmp_path, "r"), relay=True, relay_rate=200_000) as r,
        running(make_home(tmp_path, "b")) as b,
        running(make_home(tmp_path, "a")) as a,
        running(make_home(tmp_path, "c")) as c,
    ):
        b.serve(ECHO, echo)
        await session(b, r)
        link_a, link_c = await session(a, r), await session(c, r)
        assert r.relay_service is not None
        drops: dict[str, int] = {}
        forward = r.relay_service.forward

        def counting(s: Any, dst: Any, packet: bytes) -> Any:
            result = forward(s, dst, packet)
            if result == "quota":
                drops[str(s.peer)] = drops.get(str(s.peer), 0) + 1
            return result

        r.relay_service.forward = counting  # type: ignore[method-assign]
        conn_a = await a.endpoint.connect(b.aura_id, [], [link_a.path_to(b.aura_id)])
        conn_c = await c.endpoint.connect(b.aura_id, [], [link_c.path_to(b.aura_id)])
        async with await conn_a.open_stream(ECHO) as stream:  # a pushes 1 MB: 5x its 1 s budget
            data = bytes(1_000_000)
            assert await echo_through(stream, data) == data  # QUIC recovers the dropped packets
        assert drops.get(str(a.aura_id), 0) > 0
        async with await conn_c.open_stream(ECHO) as stream:  # c stays within its own budget
            assert await echo_through(stream, b"c" * 50_000) == b"c" * 50_000
        assert drops.get(str(c.aura_id), 0) == 0


@pytest.mark.parametrize(
    ("policy", "token", "admitted"),
    [
        ({"relay_access": "token", "relay_token": "s3cret"}, "s3cret", True),
        ({"relay_access": "token", "relay_token": "s3cret"}, "wrong", False),
        ({"relay_access": "allow", "relay_allow": ()}, None, False),
    ],
)
async def test_access_policy(tmp_path: Path, policy: dict[str, Any], token: str | None, admitted: bool) -> None:
    async with (
        running(make_home(tmp_path, "r"), relay=True, **policy) as r,
        running(make_home(tmp_path, "a"), relays_token=token) as a,
    ):
        link = a.relay_link(relay_of(r))
        if admitted:
            await link.wait_ready(5.0)
        else:
            with pytest.raises(TimeoutError):
                await link.wait_ready(1.0)
            assert r.relay_service is not None and r.relay_service.stats["refused"] >= 1


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=100.0, burst=300.0, now=0.0)
    assert bucket.take(300, 0.0) and not bucket.take(1, 0.0)
    assert bucket.take(100, 1.0) and not bucket.take(1, 1.0)
    assert bucket.take(300, 100.0) and not bucket.take(1, 100.0)  # refill is capped at the burst


def test_relay_messages_round_trip() -> None:
    peer = Identity.from_seed(bytes(32)).aura_id
    for message in (Hello(b"tok"), Hello(), Welcome(1000, 8, bytes(range(32))), PeerGone(peer)):
        assert round_trip(CODEC, message) == message
    with pytest.raises(LocalProtocolError):
        CODEC.encode(Welcome(1000, 8, b"short key"))


@pytest.mark.parametrize("retired", [3, 4])
def test_the_retired_stream_messages_are_refused(retired: int) -> None:
    data = bytearray(CODEC.encode(PeerGone(Identity.from_seed(bytes(32)).aura_id)))
    assert data[1] == PeerGone.TYPE  # version byte, then the type (a one-byte varint)
    data[1] = retired  # Send (3) and Deliver (4) carried packets on the stream; now only datagrams do
    decoder = FrameDecoder(max_size=CODEC.max_size)
    decoder.feed(bytes(data))
    frame = decoder.next_frame()
    assert frame is not None
    with pytest.raises(RemoteProtocolError):
        CODEC.decode(frame)


@given(st.binary(max_size=2000))
def test_any_bytes_decode_to_relay_messages_or_raise_our_protocol_error(data: bytes) -> None:
    decode_or_protocol_error(CODEC, data)


async def test_reputation_bans_refuse_peers_and_relay_outcomes_are_scored(tmp_path: Path) -> None:
    async with (
        running(make_home(tmp_path, "r"), relay=True) as r,
        running(make_home(tmp_path, "b")) as b,
        running(make_home(tmp_path, "a")) as a,
    ):
        await session(b, r)
        now = r.wall_clock()
        assert b.reputation.standing(Role.RELAY, r.aura_id, now).positive > 0  # the session opened
        r.reputation.ban(Role.PEER, a.aura_id, now, duration=3600, reason="test ban")
        conn = await a.connect(r.aura_id, r.listen_addresses)  # our handshake completes first...
        async with asyncio.timeout(5.0):
            await conn.wait_closed()  # ...then the relay, having proven who we are, refuses us
        with pytest.raises(ConnectionError_):
            await conn.open_stream(ECHO)
        assert r.endpoint.connection_to(a.aura_id) is None
        assert [link["score"] > 0.5 for link in b.status()["relays"]] == [True]
        assert all("reputation" in p for p in b.peers())


def test_relay_datagrams_round_trip_and_refuse_a_wrong_key_or_tag() -> None:
    peer, key = Identity.from_seed(bytes(32)).aura_id, bytes(range(32))
    data = encode_datagram(SEND_DATAGRAM, key, peer, b"\xc0quic")
    assert decode_datagram(data, key) == (peer, b"\xc0quic")
    assert decode_datagram(data, DatagramKey(key)) == (peer, b"\xc0quic")
    with pytest.raises(RemoteProtocolError):
        decode_datagram(data, bytes(32))  # another session's key
    with pytest.raises(RemoteProtocolError):
        decode_datagram(data[:-1] + b"!", key)  # a changed packet
    with pytest.raises(RemoteProtocolError):
        decode_datagram(bytes([DELIVER_DATAGRAM]) + data[1:], key)  # the kind is covered by the tag
    with pytest.raises(RemoteProtocolError):
        decode_datagram(data[:1] + data[1:17][::-1] + data[17:], key)  # a changed tag


SHORT_HEADER, LONG_HEADER, PROBE_PACKET = 0x41, 0xC3, PROBE
"""First bytes of a 1-RTT QUIC packet, of a long-header (Initial) packet, and of a path probe."""


def mutate(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize("first", [SHORT_HEADER, LONG_HEADER, PROBE_PACKET])
def test_a_relay_datagram_tag_covers_everything_but_a_1rtt_packets_tail(first: int) -> None:
    peer, key = Identity.from_seed(bytes(32)).aura_id, DatagramKey(bytes(range(32)))
    packet = bytes([first]) + bytes(range(256)) * 4 + bytes(175)  # 1200 bytes, a full-size QUIC datagram
    data = key.seal(SEND_DATAGRAM, peer.public_key, packet)
    key.check(data)
    covered = len(data) if first != SHORT_HEADER else PACKET_OFFSET + TAGGED_PREFIX
    for at in range(len(data)):
        if at < covered:  # kind, tag, peer and the covered bytes: any change is refused
            with pytest.raises(RemoteProtocolError):
                key.check(mutate(data, at))
        else:  # a 1-RTT packet's tail: end-to-end QUIC authenticates it (see the protocol docstring)
            key.check(mutate(data, at))
    for shorter in (data[:-1], data + b"\x00"):  # the length is covered too: no growing or cutting a copy
        with pytest.raises(RemoteProtocolError):
            key.check(shorter)


def test_a_datagram_key_refuses_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        DatagramKey(bytes(31))
    key, peer = DatagramKey(bytes(32)), bytes(32)
    for packet in (b"", bytes(MAX_PACKET + 1)):
        with pytest.raises(LocalProtocolError):
            key.seal(SEND_DATAGRAM, peer, packet)


@given(
    st.sampled_from([SEND_DATAGRAM, DELIVER_DATAGRAM]),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=1, max_size=MAX_PACKET),
)
def test_any_relay_datagram_round_trips(kind: int, peer: bytes, packet: bytes) -> None:
    key = DatagramKey(bytes(range(32)))
    data = key.seal(kind, peer, packet)
    key.check(data)
    assert data[0] == kind and data[PEER_SLICE] == peer and data[PACKET_OFFSET:] == packet
    with pytest.raises(RemoteProtocolError):
        DatagramKey(bytes(32)).check(data)


@given(st.binary(max_size=1700))
def test_any_bytes_decode_as_a_relay_datagram_or_raise_our_protocol_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_datagram(data, bytes(32))
