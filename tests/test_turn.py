"""TURN on relay nodes: the sans-I/O server with explicit time, its codec, aioice's client on loopback, the node."""

from __future__ import annotations

import asyncio
import itertools
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint, make_integrity_key
from hypothesis import given, settings
from hypothesis import strategies as st

from auralink.calls.ice import IceServer
from auralink.calls.turn import (
    CODEC,
    TURN_PROTOCOL,
    CredentialRequest,
    Credentials,
    Refusal,
    turn_credentials,
    turn_server,
)
from auralink.errors import LocalProtocolError, RemoteProtocolError, TurnRefused
from auralink.identity import AuraID, Identity
from auralink.wire import Address
from auralink_node.relay import RelayPolicy
from auralink_node.turn import TurnConfig, TurnServer, TurnService
from auralink_node.turn.core import Addr
from auralink_node.turn.credentials import integrity_key, make_username, parse_username, password_for
from tests.nodes import make_home, running
from tests.strategies import decode_or_protocol_error, round_trip

SECRET = bytes(range(32))
EPOCH = 1_800_000_000.0
"""Unix time at ``now = 0`` in the core tests."""
RELAY_IP = "203.0.113.1"
ALICE = Identity.from_seed(b"\x01" * 32).aura_id
BOB = Identity.from_seed(b"\x02" * 32).aura_id
PEER = ("198.51.100.7", 40000)
CLIENT = ("192.0.2.10", 50000)
_ids = itertools.count(1)


@dataclass
class FakeIO:
    """The adapter side of the core, in memory: what was sent, which relayed ports are open."""

    sent: list[tuple[bytes, Addr]] = field(default_factory=list)
    relayed: list[tuple[Addr, bytes, Addr]] = field(default_factory=list)
    open: set[Addr] = field(default_factory=set)
    ports: Any = field(default_factory=lambda: itertools.count(49152))
    exhausted: bool = False

    def send(self, data: bytes, addr: Addr) -> None:
        self.sent.append((data, addr))

    def relay(self, relayed: Addr, data: bytes, peer: Addr) -> None:
        self.relayed.append((relayed, data, peer))

    def open_relay(self) -> Addr | None:
        if self.exhausted:
            return None
        addr = (RELAY_IP, next(self.ports))
        self.open.add(addr)
        return addr

    def close_relay(self, relayed: Addr) -> None:
        self.open.remove(relayed)


def server(io: FakeIO, **config: Any) -> TurnServer:
    banned = config.pop("banned", None)
    forbidden = config.pop("forbidden", frozenset())
    return TurnServer(TurnConfig(**config), SECRET, io, epoch=EPOCH, banned=banned, forbidden_peers=forbidden)


class Client:
    """A TURN client over the core, built from aioice's STUN codec (what aioice's own client sends)."""

    def __init__(
        self,
        core: TurnServer,
        io: FakeIO,
        addr: Addr = CLIENT,
        user: AuraID = ALICE,
        *,
        expires_at: int = int(EPOCH) + 3600,
        password: str | None = None,
    ) -> None:
        self.core, self.io, self.addr = core, io, addr
        self.username = make_username(user, expires_at)
        self.password = password if password is not None else password_for(SECRET, self.username)
        self.realm: str | None = None
        self.nonce: bytes | None = None

    @property
    def key(self) -> bytes:
        assert self.realm is not None
        return make_integrity_key(self.username, self.realm, self.password)

    def message(self, method: stun.Method, attributes: dict[str, Any], *, auth: bool = True) -> stun.Message:
        tid = next(_ids).to_bytes(12, "big")
        request = stun.Message(method, stun.Class.REQUEST, tid, dict(attributes))
        if auth and self.nonce is not None:
            request.attributes.update(USERNAME=self.username, REALM=self.realm, NONCE=self.nonce)
            request.add_message_integrity(self.key)
        return request

    def send(self, request: stun.Message | bytes, now: float) -> stun.Message | None:
        before = len(self.io.sent)
        self.core.datagram_received(bytes(request), self.addr, now)
        replies = [data for data, addr in self.io.sent[before:] if addr == self.addr]
        if not replies:
            return None
        reply = stun.parse_message(replies[-1])
        if reply.message_class == stun.Class.ERROR and "NONCE" in reply.attributes:
            self.nonce = reply.attributes["NONCE"]
            self.realm = reply.attributes["REALM"]
        return reply

    def request(self, method: stun.Method, attributes: dict[str, Any], now: float) -> stun.Message:
        """One request with the current nonce, retried once after a 401 or 438 (as aioice does)."""
        reply = self.send(self.message(method, attributes), now)
        assert reply is not None
        if reply.message_class == stun.Class.ERROR and reply.error_code in (401, 438) and "NONCE" in reply.attributes:
            reply = self.send(self.message(method, attributes), now)
            assert reply is not None
        return reply

    def allocate(self, now: float = 0.0, lifetime: int | None = None) -> stun.Message:
        attributes: dict[str, Any] = {"REQUESTED-TRANSPORT": 0x11000000}
        if lifetime is not None:
            attributes["LIFETIME"] = lifetime
        return self.request(stun.Method.ALLOCATE, attributes, now)

    def channel_data(self, number: int, data: bytes, now: float) -> None:
        self.core.datagram_received(struct.pack("!HH", number, len(data)) + data, self.addr, now)

    def last_to_me(self) -> bytes:
        return next(data for data, addr in reversed(self.io.sent) if addr == self.addr)


def ok(reply: stun.Message | None) -> stun.Message:
    assert reply is not None and reply.message_class == stun.Class.RESPONSE, reply
    return reply


def error(reply: stun.Message | None) -> int:
    assert reply is not None and reply.message_class == stun.Class.ERROR, reply
    code = reply.error_code
    assert code is not None
    return code


def allocated(**config: Any) -> tuple[TurnServer, FakeIO, Client, Addr]:
    io = FakeIO()
    core = server(io, **config)
    client = Client(core, io)
    reply = ok(client.allocate())
    return core, io, client, reply.attributes["XOR-RELAYED-ADDRESS"]


# -- credentials ------------------------------------------------------------------------------


def test_credentials_are_turn_rest_api_style_and_give_aioices_key() -> None:
    username = make_username(ALICE, 1_800_000_123)
    assert username == f"1800000123:{ALICE}"
    assert parse_username(username) == (1_800_000_123, ALICE)
    password = password_for(SECRET, username)
    assert password != password_for(bytes(32), username)
    assert integrity_key(username, "auralink", password) == make_integrity_key(username, "auralink", password)


@pytest.mark.parametrize("bad", ["", "123", f"x:{ALICE}", f"-5:{ALICE}", "123:not-an-aura-id", f"1e9:{ALICE}"])
def test_usernames_that_are_not_ours_do_not_parse(bad: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_username(bad)


# -- allocation and authentication ---------------------------------------------------------


def test_allocate_is_challenged_then_granted_with_a_signed_answer() -> None:
    io = FakeIO()
    core = server(io)
    client = Client(core, io)
    first = client.send(client.message(stun.Method.ALLOCATE, {"REQUESTED-TRANSPORT": 0x11000000}), 0.0)
    assert error(first) == 401 and first is not None
    assert first.attributes["REALM"] == "auralink" and first.attributes["NONCE"]
    assert core.allocation_count == 0
    reply = ok(client.send(client.message(stun.Method.ALLOCATE, {"REQUESTED-TRANSPORT": 0x11000000}), 0.0))
    assert reply.attributes["XOR-RELAYED-ADDRESS"][0] == RELAY_IP
    assert reply.attributes["XOR-RELAYED-ADDRESS"] in io.open
    assert reply.attributes["XOR-MAPPED-ADDRESS"] == CLIENT
    assert reply.attributes["LIFETIME"] == 600
    signed = stun.parse_message(client.last_to_me())
    assert signed.check_message_integrity(client.key)  # aioice drops unsigned answers to signed requests
    assert core.allocation(CLIENT) is not None and core.allocation(CLIENT)["user"] == ALICE  # type: ignore[index]


def test_a_wrong_password_is_refused() -> None:
    io = FakeIO()
    core = server(io)
    client = Client(core, io, password="guess")
    assert error(client.allocate()) == 401
    assert core.allocation_count == 0 and core.stats["auth_failures"] == 1


def test_a_username_altered_to_live_longer_is_refused() -> None:
    io = FakeIO()
    core = server(io)
    issued = make_username(ALICE, int(EPOCH) + 60)
    client = Client(core, io, expires_at=int(EPOCH) + 10**6, password=password_for(SECRET, issued))
    assert error(client.allocate()) == 401
    assert core.allocation_count == 0


def test_an_expired_username_cannot_allocate_but_an_allocation_outlives_its_credentials() -> None:
    io = FakeIO()
    core = server(io)
    late = Client(core, io, ("192.0.2.11", 1), expires_at=int(EPOCH) - 1)
    assert error(late.allocate()) == 401
    assert core.stats["expired_usernames"] == 1 and core.allocation_count == 0
    client = Client(core, io, expires_at=int(EPOCH) + 100)
    ok(client.allocate(0.0))
    now = 500.0  # the username expired at 100
    reply = ok(client.request(stun.Method.REFRESH, {"LIFETIME": 600}, now))
    assert reply.attributes["LIFETIME"] == 600
    assert core.allocation(CLIENT) is not None


def test_a_stale_nonce_gets_438_and_a_fresh_nonce_that_works() -> None:
    core, _io, client, _ = allocated(nonce_lifetime=60)
    old = client.nonce
    stale = client.send(client.message(stun.Method.REFRESH, {"LIFETIME": 600}), 61.0)
    assert error(stale) == 438 and client.nonce != old
    ok(client.send(client.message(stun.Method.REFRESH, {"LIFETIME": 600}), 61.0))
    assert core.stats["stale_nonces"] == 1


def test_a_nonce_is_bound_to_the_client_address() -> None:
    io = FakeIO()
    core = server(io)
    alice = Client(core, io)
    ok(alice.allocate())
    thief = Client(core, io, ("192.0.2.99", 7))
    thief.nonce, thief.realm = alice.nonce, alice.realm
    reply = thief.send(thief.message(stun.Method.ALLOCATE, {"REQUESTED-TRANSPORT": 0x11000000}), 1.0)
    assert error(reply) == 438


def test_integrity_without_username_is_a_bad_request() -> None:
    _core, _io, client, _ = allocated()
    request = client.message(stun.Method.REFRESH, {}, auth=False)
    request.add_message_integrity(client.key)
    assert error(client.send(request, 1.0)) == 400


def test_allocate_needs_udp_transport() -> None:
    io = FakeIO()
    core = server(io)
    client = Client(core, io)
    assert error(client.request(stun.Method.ALLOCATE, {}, 0.0)) == 400
    assert error(client.request(stun.Method.ALLOCATE, {"REQUESTED-TRANSPORT": 0x06000000}, 0.0)) == 442
    assert core.allocation_count == 0


def test_a_retransmitted_allocate_gets_the_same_answer_and_a_new_one_gets_437() -> None:
    io = FakeIO()
    core = server(io)
    client = Client(core, io)
    client.send(client.message(stun.Method.ALLOCATE, {}), 0.0)  # the challenge
    request = client.message(stun.Method.ALLOCATE, {"REQUESTED-TRANSPORT": 0x11000000})
    first = ok(client.send(request, 1.0))
    again = ok(client.send(request, 2.0))
    assert again.attributes["XOR-RELAYED-ADDRESS"] == first.attributes["XOR-RELAYED-ADDRESS"]
    assert error(client.allocate(3.0)) == 437
    assert core.allocation_count == 1 and len(io.open) == 1


def test_requests_need_an_allocation_of_their_own_username() -> None:
    io = FakeIO()
    core = server(io)
    client = Client(core, io)
    client.send(client.message(stun.Method.REFRESH, {}), 0.0)  # the challenge
    assert error(client.request(stun.Method.REFRESH, {}, 0.0)) == 437
    ok(client.allocate())
    other = Client(core, io, CLIENT, BOB)
    assert error(other.request(stun.Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER}, 1.0)) == 441


def test_refresh_extends_within_bounds_and_lifetime_zero_deletes() -> None:
    core, io, client, relayed = allocated()
    assert ok(client.request(stun.Method.REFRESH, {"LIFETIME": 10**6}, 100.0)).attributes["LIFETIME"] == 3600
    assert ok(client.request(stun.Method.REFRESH, {"LIFETIME": 30}, 200.0)).attributes["LIFETIME"] == 600
    assert core.get_timer() == 800.0
    assert ok(client.request(stun.Method.REFRESH, {"LIFETIME": 0}, 300.0)).attributes["LIFETIME"] == 0
    assert core.allocation_count == 0 and relayed not in io.open
    assert core.get_timer() is None


def test_allocations_expire_by_the_timer_and_free_their_port() -> None:
    core, io, _client, relayed = allocated()
    assert core.get_timer() == 600.0
    core.handle_timer(599.9)
    assert core.allocation_count == 1
    core.handle_timer(600.0)
    assert core.allocation_count == 0 and relayed not in io.open and core.stats["allocations_expired"] == 1
    core.peer_datagram_received(relayed, b"late", PEER, 601.0)
    assert core.stats["dropped_unknown"] == 1


def test_allocations_per_user_and_in_all_are_capped() -> None:
    io = FakeIO()
    core = server(io, max_allocations_per_user=2, max_allocations=3)
    for port in (1, 2):
        ok(Client(core, io, ("192.0.2.20", port)).allocate())
    assert error(Client(core, io, ("192.0.2.20", 3)).allocate()) == 486
    ok(Client(core, io, ("192.0.2.21", 1), BOB).allocate())
    assert error(Client(core, io, ("192.0.2.21", 2), BOB).allocate()) == 508
    io2 = FakeIO(exhausted=True)
    assert error(Client(server(io2), io2).allocate()) == 508


def test_a_banned_user_is_refused_and_loses_its_allocation() -> None:
    banned: set[AuraID] = set()
    core, io, client, relayed = allocated(banned=banned.__contains__)
    banned.add(ALICE)
    assert error(client.request(stun.Method.REFRESH, {}, 1.0)) == 403
    assert core.allocation_count == 0 and relayed not in io.open


# -- permissions, channels and data ------------------------------------------------------


def test_data_flows_only_to_and_from_permitted_peers() -> None:
    core, io, client, relayed = allocated()
    send = stun.Message(stun.Method.SEND, stun.Class.INDICATION, attributes={"XOR-PEER-ADDRESS": PEER, "DATA": b"x"})
    core.datagram_received(bytes(send), CLIENT, 1.0)
    core.peer_datagram_received(relayed, b"unsolicited", PEER, 1.0)
    assert io.relayed == [] and core.stats["dropped_no_permission"] == 2
    ok(client.request(stun.Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": PEER}, 2.0))
    core.datagram_received(bytes(send), CLIENT, 3.0)
    assert io.relayed == [(relayed, b"x", PEER)]
    other_port = (PEER[0], 40001)  # permissions are per IP address (RFC 8656 section 9)
    core.peer_datagram_received(relayed, b"reply", other_port, 4.0)
    indication = stun.parse_message(client.last_to_me())
    assert (indication.message_method, indication.message_class) == (stun.Method.DATA, stun.Class.INDICATION)
    assert indication.attributes["XOR-PEER-ADDRESS"] == other_port and indication.attributes["DATA"] == b"reply"
    core.peer_datagram_received(relayed, b"late", PEER, 2.0 + 300.0)  # the permission lasted 300 s
    assert core.stats["packets_to_clients"] == 1


def raw_request(method: stun.Method, tid: bytes, attributes: list[tuple[int, bytes]], key: bytes) -> bytes:
    """A request built byte by byte, signed with ``key`` (aioice's Message keeps one value per attribute)."""
    body = b"".join(struct.pack("!HH", kind, len(v)) + v + bytes(stun.padding_length(len(v))) for kind, v in attributes)
    head = struct.pack("!HHI12s", method | stun.Class.REQUEST, len(body), stun.COOKIE, tid)
    integrity = stun.message_integrity(head + body, key)
    body += struct.pack("!HH", 0x0008, len(integrity)) + integrity
    return struct.pack("!HHI12s", method | stun.Class.REQUEST, len(body), stun.COOKIE, tid) + body


def test_create_permission_installs_every_peer_it_lists() -> None:
    core, _io, client, relayed = allocated()
    assert client.realm is not None and client.nonce is not None
    tid = bytes(range(12))
    peers = [PEER, ("198.51.100.8", 1)]
    attributes = [(0x0012, stun.pack_xor_address(peer, tid)) for peer in peers] + [
        (0x0006, client.username.encode()),
        (0x0014, client.realm.encode()),
        (0x0015, client.nonce),
    ]
    ok(client.send(raw_request(stun.Method.CREATE_PERMISSION, tid, attributes, client.key), 1.0))
    assert set(core.allocation(CLIENT)["permissions"]) == {PEER[0], "198.51.100.8"}  # type: ignore[index]
    for peer in peers:
        core.peer_datagram_received(relayed, b"hi", peer, 2.0)
    assert core.stats["packets_to_clients"] == 2


def test_channels_carry_data_both_ways_and_expire() -> None:
    core, io, client, relayed = allocated()
    ok(client.request(stun.Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4001, "XOR-PEER-ADDRESS": PEER}, 1.0))
    client.channel_data(0x4001, b"to peer", 2.0)
    assert io.relayed[-1] == (relayed, b"to peer", PEER)
    core.peer_datagram_received(relayed, b"to client", PEER, 3.0)
    assert client.last_to_me() == struct.pack("!HH", 0x4001, 9) + b"to client"
    client.channel_data(0x4002, b"unbound", 4.0)
    client.core.datagram_received(struct.pack("!HH", 0x4001, 100) + b"short", CLIENT, 4.0)
    assert len(io.relayed) == 1
    # The binding installs a permission as long as the channel (aioice refreshes channels at 500 s).
    core.peer_datagram_received(relayed, b"minute 7", PEER, 1.0 + 420.0)
    assert client.last_to_me().endswith(b"minute 7")
    ok(client.request(stun.Method.REFRESH, {"LIFETIME": 3600}, 500.0))
    client.channel_data(0x4001, b"too late", 1.0 + 600.0)
    assert len(io.relayed) == 1 and core.stats["dropped_unknown"] >= 2


@pytest.mark.parametrize(
    ("number", "peer", "code"),
    [
        (0x3FFF, PEER, 400),  # below the channel range
        (0x5000, PEER, 400),  # above it
        (0x4001, ("198.51.100.9", 1), 400),  # the channel is bound to another peer
        (0x4002, PEER, 400),  # the peer is bound to another channel
        (0x4003, ("127.0.0.1", 9), 403),
        (0x4003, ("224.0.0.1", 9), 403),
        (0x4003, ("0.0.0.0", 9), 403),
        (0x4003, ("169.254.169.254", 80), 403),
        (0x4003, ("255.255.255.255", 9), 403),
    ],
)
def test_channel_bind_refuses_bad_numbers_conflicts_and_forbidden_peers(number: int, peer: Addr, code: int) -> None:
    _core, _io, client, _relayed = allocated()
    ok(client.request(stun.Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4001, "XOR-PEER-ADDRESS": PEER}, 1.0))
    reply = client.request(stun.Method.CHANNEL_BIND, {"CHANNEL-NUMBER": number, "XOR-PEER-ADDRESS": peer}, 2.0)
    assert error(reply) == code
    assert ok(client.request(stun.Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4001, "XOR-PEER-ADDRESS": PEER}, 3.0))


def test_the_relays_own_address_is_a_fine_peer_but_its_own_ports_receive_nothing() -> None:
    own = (RELAY_IP, 3478)
    core, io, client, relayed = allocated(forbidden=frozenset({own}))
    other_allocation = (RELAY_IP, 60000)
    ok(client.request(stun.Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": other_allocation}, 1.0))
    ok(client.request(stun.Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4001, "XOR-PEER-ADDRESS": own}, 1.0))
    client.channel_data(0x4000, b"via the relay", 2.0)
    client.channel_data(0x4001, b"into the TURN port", 2.0)
    assert io.relayed == [(relayed, b"via the relay", other_allocation)]
    assert core.stats["dropped_forbidden"] == 1


def test_loopback_peers_need_the_test_switch() -> None:
    _, _, client, _ = allocated(allow_loopback=True)
    ok(client.request(stun.Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": ("127.0.0.1", 9)}, 1.0))


def test_the_byte_rate_is_capped_per_allocation_in_both_directions() -> None:
    core, _io, client, relayed = allocated(bytes_per_second=1000, burst_bytes=1000)
    ok(client.request(stun.Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": PEER}, 0.0))
    for _ in range(4):
        client.channel_data(0x4000, bytes(200), 0.0)
    for _ in range(4):
        core.peer_datagram_received(relayed, bytes(200), PEER, 0.0)
    assert core.stats["bytes_to_peers"] + core.stats["bytes_to_clients"] == 1000
    assert core.stats["dropped_quota"] == 3
    client.channel_data(0x4000, bytes(200), 0.2)  # 0.2 s refills 200 bytes
    assert core.stats["bytes_to_peers"] == 1000


def test_a_binding_request_gets_the_mapped_address_without_authentication() -> None:
    io = FakeIO()
    core = server(io)
    client = Client(core, io)
    reply = ok(client.send(client.message(stun.Method.BINDING, {}, auth=False), 0.0))
    assert reply.attributes["XOR-MAPPED-ADDRESS"] == CLIENT


# -- no input raises ------------------------------------------------------------------------

stun_like = st.builds(
    lambda kind, body, tid: struct.pack("!HHI12s", kind, len(body), stun.COOKIE, tid) + body,
    st.integers(0, 0x3FFF),
    st.binary(max_size=200),
    st.binary(min_size=12, max_size=12),
)
channel_like = st.builds(
    lambda number, body, claimed: struct.pack("!HH", number, claimed) + body,
    st.integers(0x4000, 0x4FFF),
    st.binary(max_size=64),
    st.integers(0, 0xFFFF),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=300), stun_like, channel_like), max_size=8), st.booleans())
def test_any_datagram_is_answered_or_dropped_never_raised(datagrams: list[bytes], from_peer: bool) -> None:
    core, io, client, relayed = allocated()
    ok(client.request(stun.Method.CHANNEL_BIND, {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": PEER}, 0.0))
    for i, data in enumerate(datagrams):
        core.datagram_received(data, CLIENT, float(i))
        core.datagram_received(data, ("192.0.2.50", 9), float(i))
        core.peer_datagram_received(relayed if from_peer else ("0.0.0.0", 1), data, PEER, float(i))
    for data, _ in io.sent:  # whatever we answered is a STUN message or ChannelData
        assert data[0] & 0xC0 in (0x00, 0x40)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(stun.ATTRIBUTES_BY_NAME)), st.just(None), max_size=6), st.data())
def test_signed_requests_with_any_attributes_never_raise(names: dict[str, None], data: st.DataObject) -> None:
    _core, _io, client, _relayed = allocated()
    values = {
        "XOR-PEER-ADDRESS": st.tuples(st.sampled_from(["198.51.100.7", "127.0.0.1", "::1"]), st.integers(0, 65535)),
        "CHANNEL-NUMBER": st.integers(0, 0xFFFF),
        "LIFETIME": st.integers(0, 2**32 - 1),
        "REQUESTED-TRANSPORT": st.integers(0, 2**32 - 1),
    }
    attributes = {name: data.draw(values[name]) for name in names if name in values}
    for method in (stun.Method.ALLOCATE, stun.Method.REFRESH, stun.Method.CREATE_PERMISSION, stun.Method.CHANNEL_BIND):
        client.request(method, attributes, 1.0)


# -- auralink/turn/1 codec --------------------------------------------------------------------

texts = st.text(max_size=40)
messages = st.one_of(
    st.builds(CredentialRequest, st.binary(max_size=256)),
    st.builds(Credentials, st.lists(texts, min_size=1, max_size=4).map(tuple), texts, texts, st.integers(0, 2**64 - 1)),
    st.builds(Refusal, texts),
)


@given(messages)
def test_turn_messages_round_trip(message: Any) -> None:
    assert round_trip(CODEC, message) == message


@given(st.binary(max_size=300))
def test_any_bytes_decode_as_turn_messages_or_raise_remote_protocol_error(data: bytes) -> None:
    decode_or_protocol_error(CODEC, data)


def test_turn_message_golden_vector() -> None:
    grant = Credentials(("turn:10.1.0.2:3478?transport=udp",), "1:x", "pw", 7)
    assert CODEC.encode(grant).hex() == (
        "0102"
        + "31"  # the payload: 1 + 1 + 32 + 1 + 3 + 1 + 2 + 8 = 49 bytes
        + "01"
        + "20"
        + b"turn:10.1.0.2:3478?transport=udp".hex()
        + "03"
        + b"1:x".hex()
        + "02"
        + b"pw".hex()
        + "0000000000000007"
    )
    with pytest.raises(LocalProtocolError):
        Credentials((), "u", "p", 0)


# -- the adapter on loopback, with aioice's TURN client ----------------------------------------


class Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Addr]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.queue.put_nowait((data, addr[:2]))


@pytest.fixture
async def turn() -> Any:
    service = TurnService(TurnConfig(allow_loopback=True), RelayPolicy(), Address("127.0.0.1", 0))
    await service.start()
    try:
        yield service
    finally:
        service.close()


async def test_aioices_turn_client_allocates_and_exchanges_datagrams_with_a_peer(turn: TurnService) -> None:
    loop = asyncio.get_running_loop()
    credentials = turn.credentials_for(ALICE)
    peer_transport, peer = await loop.create_datagram_endpoint(Inbox, local_addr=("127.0.0.1", 0))
    relay_transport, client = await create_turn_endpoint(
        Inbox, (turn.address.host, turn.address.port), credentials.username, credentials.password
    )
    try:
        relayed = relay_transport.get_extra_info("sockname")
        assert relayed[0] == "127.0.0.1" and relayed[1] != turn.address.port
        peer_address = peer_transport.get_extra_info("sockname")
        async with asyncio.timeout(10):
            for i in range(50):  # the first send binds a channel; the rest are ChannelData
                relay_transport.sendto(f"ping {i}".encode(), peer_address)
                data, source = await peer.queue.get()
                assert data == f"ping {i}".encode() and source == relayed
                peer_transport.sendto(f"pong {i}".encode(), relayed)
                assert await client.queue.get() == (f"pong {i}".encode(), peer_address)
        stats = turn.stats()
        assert stats["allocations"] == 1 and stats["packets_to_peers"] == 50 and stats["packets_to_clients"] == 50
    finally:
        relay_transport.close()
        peer_transport.close()
    async with asyncio.timeout(10):  # closing deletes the allocation (Refresh LIFETIME 0)
        while turn.stats()["allocations"]:
            await asyncio.sleep(0.01)


async def test_aioice_is_refused_with_a_wrong_password(turn: TurnService) -> None:
    credentials = turn.credentials_for(ALICE)
    with pytest.raises(stun.TransactionFailed, match="401"):
        await create_turn_endpoint(Inbox, (turn.address.host, turn.address.port), credentials.username, "wrong")
    assert turn.stats()["allocations"] == 0


async def test_two_aioice_agents_connect_through_the_turn_server_only() -> None:
    aioice = pytest.importorskip("aioice")
    service = TurnService(TurnConfig(allow_loopback=True), RelayPolicy(), Address("127.0.0.1", 0))
    await service.start()
    a_creds, b_creds = service.credentials_for(ALICE), service.credentials_for(BOB)
    server_addr = (service.address.host, service.address.port)
    a = aioice.Connection(
        ice_controlling=True,
        turn_server=server_addr,
        turn_username=a_creds.username,
        turn_password=a_creds.password,
        transport_policy=aioice.TransportPolicy.RELAY,
    )
    b = aioice.Connection(
        ice_controlling=False,
        turn_server=server_addr,
        turn_username=b_creds.username,
        turn_password=b_creds.password,
        transport_policy=aioice.TransportPolicy.RELAY,
    )
    try:
        async with asyncio.timeout(20):
            await asyncio.gather(a.gather_candidates(), b.gather_candidates())
            assert {c.type for c in a.local_candidates} == {"relay"}
            for candidate in a.local_candidates:
                await b.add_remote_candidate(candidate)
            for candidate in b.local_candidates:
                await a.add_remote_candidate(candidate)
            await a.add_remote_candidate(None)
            await b.add_remote_candidate(None)
            b.remote_username, b.remote_password = a.local_username, a.local_password
            a.remote_username, a.remote_password = b.local_username, b.local_password
            await asyncio.gather(a.connect(), b.connect())
            await a.sendto(b"through the relay", 1)
            assert await b.recvfrom() == (b"through the relay", 1)
        assert service.stats()["allocations"] == 2 and service.stats()["packets_to_peers"] > 0
    finally:
        await asyncio.gather(a.close(), b.close())
        service.close()


# -- the node: auralink/turn/1, status and metrics --------------------------------------------


async def test_a_relay_node_serves_turn_and_hands_out_credentials(tmp_path: Path) -> None:
    from auralink.mesh import _EmbeddedMesh  # noqa: PLC0415 - the embedded back end over a running node

    async with (
        running(make_home(tmp_path, "r"), relay=True, turn_port=0) as relay,
        running(make_home(tmp_path, "c")) as caller,
    ):
        assert relay.turn_service is not None
        url = relay.status()["turn"]
        assert url == relay.turn_service.url and url.startswith("turn:127.0.0.1:")
        assert TURN_PROTOCOL in relay.router.protocols
        mesh = _EmbeddedMesh(caller)
        ice = await turn_server(mesh, relay.aura_id, addresses=relay.listen_addresses)
        assert isinstance(ice, IceServer) and ice.url == url
        assert ice.username is not None and parse_username(ice.username)[1] == caller.aura_id
        credentials = await turn_credentials(mesh, relay.aura_id)
        assert credentials.relay == relay.aura_id
        assert credentials.expires_at == parse_username(credentials.username)[0]
        text = relay.metrics.render()[0].decode()
        assert 'auralink_turn_credentials_total{result="issued"} 2.0' in text
        assert "auralink_turn_allocations 0.0" in text


async def test_a_relay_refuses_turn_credentials_as_it_refuses_relay_sessions(tmp_path: Path) -> None:
    from auralink.mesh import _EmbeddedMesh  # noqa: PLC0415

    async with (
        running(make_home(tmp_path, "r"), relay=True, turn_port=0, relay_access="token", relay_token="s3cret") as relay,
        running(make_home(tmp_path, "c")) as caller,
    ):
        mesh = _EmbeddedMesh(caller)
        with pytest.raises(TurnRefused, match="token") as refused:
            await turn_server(mesh, relay.aura_id, addresses=relay.listen_addresses)
        assert refused.value.reason == "wrong or missing access token"
        assert (await turn_server(mesh, relay.aura_id, token=b"s3cret")).is_turn


async def test_turn_can_be_switched_off_and_a_busy_port_leaves_the_relay_running(tmp_path: Path) -> None:
    async with running(make_home(tmp_path, "r"), relay=True, turn=False) as relay:
        assert relay.turn_service is None and relay.status()["turn"] is None
    async with running(make_home(tmp_path, "a"), relay=True, turn_port=0) as first:
        assert first.turn_service is not None
        port = first.turn_service.address.port
        async with running(make_home(tmp_path, "b"), relay=True, turn_port=port) as second:
            assert second.turn_service is None and second.relay_service is not None
