"""The DHT (issue 4): real kademlia nodes on 127.0.0.1, each fixed defect with its regression test.

Every regression test that can shows both sides: kademlia 2.2.3's own code misbehaving on the same
input (so the test notices if an upgrade changes it), and ours doing the right thing. Node IDs and
keys are seeded; nothing sleeps: tests await the operations themselves, and a probe ping after a
batch of datagrams proves the batch was processed (UDP on loopback keeps order).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
import umsgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from kademlia.crawling import ValueSpiderCrawl
from kademlia.network import Server
from kademlia.node import Node
from kademlia.protocol import KademliaProtocol
from kademlia.routing import KBucket, RoutingTable
from kademlia.storage import ForgetfulStorage

from auralink.errors import AuralinkError, HandleTaken, RemoteProtocolError, SignatureError, StaleRecord
from auralink.identity import HandleClaim, Identity, NodeRecord, Record
from auralink.wire.address import Address
from auralink_node import dht
from auralink_node.dht import DHTConfig, DHTServer, PublishFailed, RateLimit, RecordStorage, UnsafeOperation
from auralink_node.dht.server import ALLOWED_RPCS, AuraKademliaProtocol, CompleteRoutingTable, RecordSpiderCrawl

T0 = 1_700_000_000
ALICE, BOB, CAROL, MALLORY = (Identity.from_seed(bytes([i]) * 32) for i in range(11, 15))
FAST = DHTConfig(ksize=4, alpha=3, rpc_timeout=0.3)
"""Small k so that replication matters in a 20-node network; a short timeout for dead contacts."""
Peer = tuple[str, int]


class FakeClock:
    """Wall-clock seconds, advanced by hand."""

    def __init__(self, now: float = T0 + 10) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def node_id(i: int) -> bytes:
    return hashlib.sha1(f"dht-test-node-{i}".encode()).digest()


def xor_id(key: bytes, delta: int) -> bytes:
    return (int.from_bytes(key, "big") ^ delta).to_bytes(20, "big")


def node_record(identity: Identity = ALICE, seq: int = 1, port: int = 7700, ttl: int = 3600) -> NodeRecord:
    return NodeRecord.create(
        identity, seq=seq, issued_at=T0, expires_at=T0 + ttl, addresses=[Address("127.0.0.1", port)]
    )


def claim(identity: Identity = ALICE, handle: str = "alice", seq: int = 1) -> HandleClaim:
    return HandleClaim.create(identity, handle, seq=seq, issued_at=T0, expires_at=T0 + 3600)


def forged_record() -> NodeRecord:
    """A node record naming Alice, signed by Mallory."""
    return NodeRecord(ALICE.aura_id, 9, T0, T0 + 60, (), (), (), MALLORY.sign(NodeRecord.DOMAIN, b"x"))


@asynccontextmanager
async def network(
    count: int, *, config: DHTConfig = FAST, clock: FakeClock | None = None
) -> AsyncIterator[list[DHTServer]]:
    """``count`` DHT nodes on 127.0.0.1 (OS-chosen ports), each bootstrapped from node 0."""
    clock = clock or FakeClock()
    servers: list[DHTServer] = []
    try:
        for i in range(count):
            server = DHTServer(node_id(i), clock=clock, config=config)
            await server.listen(0, interface="127.0.0.1")
            servers.append(server)
        for server in servers[1:]:
            await server.bootstrap([servers[0].address])
        await drain(servers)
        yield servers
    finally:
        for server in servers:
            server.stop()


async def drain(servers: list[DHTServer]) -> None:
    for server in servers:
        assert server.protocol is not None
        await server.protocol.drain()


@asynccontextmanager
async def stock_node(seed: int, bootstrap: Peer, ksize: int = 20) -> AsyncIterator[Server]:
    """An unmodified kademlia 2.2.3 node: it stores anything and stores anything anywhere."""
    server = Server(ksize=ksize, node_id=node_id(1000 + seed))
    await server.listen(0, interface="127.0.0.1")
    try:
        await server.bootstrap([bootstrap])
        yield server
    finally:
        server.stop()


def address_of(server: Server) -> Peer:
    host, port = server.transport.get_extra_info("sockname")[:2]
    return (host, port)


class RawPeer(asyncio.DatagramProtocol):
    """A bare UDP socket that sends whatever bytes a test wants and queues what comes back."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.replies.put_nowait(data)

    def send(self, data: bytes, to: Peer) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to)

    @property
    def address(self) -> Peer:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    async def ping(self, to: Peer, msg_id: bytes = b"p" * 20) -> object:
        """Ping and return the reply body: proof that everything sent before was handled."""
        self.send(b"\x00" + msg_id + umsgpack.packb(["ping", [node_id(999)]]), to)
        while True:
            reply = await asyncio.wait_for(self.replies.get(), 2.0)
            if reply[1:21] == msg_id:
                return umsgpack.unpackb(reply[21:])


@asynccontextmanager
async def raw_peer() -> AsyncIterator[RawPeer]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(RawPeer, local_addr=("127.0.0.1", 0))
    try:
        yield peer
    finally:
        transport.close()


# -- put and get across nodes ---------------------------------------------------------------------


async def test_node_record_and_handle_claim_resolve_across_nodes() -> None:
    async with network(20) as nodes:
        record, alice = node_record(), claim()
        assert await nodes[3].put(record) >= 1
        assert await nodes[5].put(alice) >= 1
        for reader in (nodes[0], nodes[11], nodes[19]):
            found = await reader.get_record(alice.dht_key())
            assert found == alice
            assert isinstance(found, HandleClaim)
            assert await reader.get_record(found.aura_id.dht_key()) == record
        assert await nodes[7].get(record.dht_key()) == record.encode()
        assert await nodes[7].get_record(BOB.aura_id.dht_key()) is None
        assert sum(record.dht_key() in node.storage for node in nodes) >= FAST.ksize
        assert not any(node.misbehaviour for node in nodes)


async def test_higher_seq_wins_and_a_replay_of_an_older_one_is_refused() -> None:
    async with network(12) as nodes:
        await nodes[1].put(node_record(seq=1, port=7701))
        await nodes[2].put(node_record(seq=2, port=7702))
        found = await nodes[9].get_record(ALICE.aura_id.dht_key())
        assert isinstance(found, NodeRecord)
        assert (found.seq, found.addresses) == (2, (Address("127.0.0.1", 7702),))
        with pytest.raises(PublishFailed):
            await nodes[4].put(node_record(seq=1, port=7701))
        assert any(node.misbehaviour[nodes[4].address] for node in nodes)
        assert (await nodes[0].get_record(ALICE.aura_id.dht_key())) == found


async def test_expired_records_are_neither_stored_nor_returned() -> None:
    clock = FakeClock()
    async with network(6, clock=clock) as nodes:
        await nodes[1].put(node_record())
        clock.now = T0 + 3600
        assert await nodes[4].get_record(ALICE.aura_id.dht_key()) is None
        assert not any(ALICE.aura_id.dht_key() in node.storage for node in nodes)


async def test_a_competing_handle_claim_is_refused_by_every_holder() -> None:
    async with network(10) as nodes:
        assert await nodes[1].put(claim(ALICE, "alice")) >= 1
        with pytest.raises(PublishFailed):
            await nodes[8].put(claim(MALLORY, "alice", seq=7))
        assert await nodes[4].get_record(claim().dht_key()) == claim(ALICE, "alice")
        assert sum(node.reasons["rejected-store:HandleTaken"] for node in nodes) >= FAST.ksize


async def test_records_still_resolve_after_a_third_of_the_nodes_stop() -> None:
    config = DHTConfig(ksize=8, rpc_timeout=0.3)
    owners = [Identity.from_seed(hashlib.sha256(b"owner-%d" % i).digest()) for i in range(10)]
    async with network(30, config=config) as nodes:
        for i, owner in enumerate(owners):
            assert await nodes[i].put(node_record(owner, port=8000 + i)) >= 1
        for node in nodes[1::3]:
            node.stop()
        alive = [node for i, node in enumerate(nodes) if i % 3 != 1]
        results = await asyncio.gather(
            *(alive[i % len(alive)].get_record(owner.aura_id.dht_key()) for i, owner in enumerate(owners))
        )
        assert results == [node_record(owner, port=8000 + i) for i, owner in enumerate(owners)]


# -- defect 1: double-hashed replication ----------------------------------------------------------


def replication_targets(welcome: Callable[[KademliaProtocol, Node], None], protocol: KademliaProtocol) -> list[bytes]:
    """Which keys ``welcome`` sends to a node that joins right next to the record's key."""
    sent: list[bytes] = []

    def call_store(node: Node, key: bytes, value: bytes) -> Coroutine[Any, Any, None]:
        sent.append(key)
        return asyncio.sleep(0)

    protocol.call_store = call_store
    key = node_record().dht_key()
    welcome(protocol, Node(xor_id(key, 1), "127.0.0.1", 9))
    return sent


async def test_replication_to_a_joining_node_uses_the_key_itself() -> None:
    key = node_record().dht_key()
    holder, far = Node(xor_id(key, 2)), Node(xor_id(hashlib.sha1(key).digest(), 1), "127.0.0.1", 8)
    assert far.distance_to(Node(key)) > holder.distance_to(Node(key))  # far from the key, next to sha1(key)

    def holding(protocol_class: type[KademliaProtocol]) -> KademliaProtocol:
        clock = FakeClock()
        storage = RecordStorage(clock)
        storage.accept(key, node_record().encode())
        if protocol_class is KademliaProtocol:
            protocol = KademliaProtocol(holder, storage, 4)
        else:
            protocol = AuraKademliaProtocol(holder, storage, 4, config=FAST, clock=clock, report=lambda p, r: None)
        protocol.router.add_contact(far)
        return protocol

    # kademlia measures the distance to sha1(key): the joining node does not get the record.
    assert replication_targets(KademliaProtocol.welcome_if_new, holding(KademliaProtocol)) == []
    ours = holding(AuraKademliaProtocol)
    assert replication_targets(AuraKademliaProtocol.welcome_if_new, ours) == [key]
    await ours.drain()


async def test_a_node_joining_next_to_a_key_receives_it_over_the_network() -> None:
    clock = FakeClock()
    record = node_record()
    key = record.dht_key()
    holder = DHTServer(xor_id(key, 2), clock=clock, config=FAST)
    joiner = DHTServer(xor_id(key, 1), clock=clock, config=FAST)
    try:
        await holder.listen(0, interface="127.0.0.1")
        await joiner.listen(0, interface="127.0.0.1")
        assert holder.protocol is not None
        holder.protocol.router.add_contact(Node(xor_id(hashlib.sha1(key).digest(), 1), "127.0.0.1", 8))
        holder.storage.accept(key, record.encode())
        await joiner.bootstrap_node(holder.address)  # the ping makes the holder welcome the joiner
        await holder.protocol.drain()
        assert joiner.storage.record(key) == record
    finally:
        holder.stop()
        joiner.stop()


# -- defect 2: find_neighbors stopping early ------------------------------------------------------


def three_bucket_table(table_class: type[RoutingTable]) -> tuple[RoutingTable, Node, list[Node]]:
    table = table_class(None, 4, Node(xor_id(bytes(20), 1 << 159 | 3)))
    table.buckets = [
        KBucket(0, (1 << 158) - 1, 4),
        KBucket(1 << 158, (1 << 159) - 1, 4),
        KBucket(1 << 159, 1 << 160, 4),
    ]
    contacts = [Node(xor_id(bytes(20), n), "127.0.0.1", 7000 + i) for i, n in enumerate((5, 6, (1 << 158) + 5))]
    for contact in contacts:
        table.add_contact(contact)
    target = Node(xor_id(bytes(20), (1 << 159) + 7))
    return table, target, contacts


def test_find_neighbors_returns_every_known_contact_at_small_k() -> None:
    stock, target, contacts = three_bucket_table(RoutingTable)
    assert len(stock.find_neighbors(target, k=3)) == 1  # kademlia: 1 of 3 known contacts
    ours, target, contacts = three_bucket_table(CompleteRoutingTable)
    found = ours.find_neighbors(target, k=3)
    assert found == sorted(contacts, key=target.distance_to)
    assert ours.find_neighbors(target, k=2) == sorted(contacts, key=target.distance_to)[:2]


# -- defect 3: set ----------------------------------------------------------------------------------


async def test_set_with_no_answering_node_returns_zero_instead_of_raising() -> None:
    clock = FakeClock()
    dead = DHTServer(node_id(50), clock=clock, config=FAST)
    await dead.listen(0, interface="127.0.0.1")
    dead_address = dead.address
    dead.stop()
    server = DHTServer(node_id(51), clock=clock, config=FAST)
    await server.listen(0, interface="127.0.0.1")
    try:
        assert server.protocol is not None
        record = node_record()
        server.protocol.router.add_contact(Node(node_id(50), *dead_address))
        with pytest.raises(ValueError, match="empty"):  # kademlia: max() of an empty list
            await Server.set_digest(server, record.dht_key(), record.encode())
        server.protocol.router.add_contact(Node(node_id(50), *dead_address))
        assert await server.set_digest(record.dht_key(), record.encode()) == 0
        server.protocol.router.add_contact(Node(node_id(50), *dead_address))
        with pytest.raises(PublishFailed):
            await server.put(record)
    finally:
        server.stop()


async def test_set_counts_acceptances_and_a_store_every_peer_refused_is_not_success() -> None:
    async with network(5, config=DHTConfig(ksize=20, rpc_timeout=0.3)) as nodes:
        forged = forged_record()
        async with stock_node(1, nodes[0].address) as stock:
            # kademlia: every peer answers (True, False), which is truthy, so set_digest says True.
            assert await stock.set_digest(forged.dht_key(), forged.encode()) is True
            assert all(node.misbehaviour[address_of(stock)] == 1 for node in nodes)
        assert await nodes[0].set_digest(forged.dht_key(), forged.encode()) == 0
        with pytest.raises(SignatureError):  # put() checks a record before sending it anywhere
            await nodes[0].put(forged)
        assert await nodes[0].put(node_record()) == 4
        assert not any(node.storage.record(forged.dht_key()) == forged for node in nodes)


# -- defect 4: poisoned get -------------------------------------------------------------------------


class FakeProtocol:
    """Just enough protocol for a lookup whose answers a test supplies."""

    def __init__(self) -> None:
        self.stored: list[tuple[Node, bytes]] = []

    async def call_store(self, peer: Node, key: bytes, value: bytes) -> tuple[bool, bool]:
        self.stored.append((peer, value))
        return (True, True)


def answers(values: list[object]) -> tuple[list[Node], dict[bytes, tuple[bool, object]]]:
    peers = [Node(node_id(200 + i), "127.0.0.1", 7000 + i) for i in range(len(values))]
    return peers, {peer.id: (True, {"value": value}) for peer, value in zip(peers, values, strict=True)}


async def test_get_ignores_a_list_value_that_crashes_kademlia() -> None:
    key = node_record().dht_key()
    peers, responses = answers([[1, 2, 3], node_record().encode()])
    stock = ValueSpiderCrawl(FakeProtocol(), Node(key), peers, 20, 3)
    with pytest.raises(TypeError, match="unhashable"):
        await stock._nodes_found(responses)
    reports: list[tuple[Peer, str]] = []
    ours = RecordSpiderCrawl(
        FakeProtocol(),  # type: ignore[arg-type]
        Node(key),
        peers,
        20,
        3,
        clock=FakeClock(),
        report=lambda p, r: reports.append((p, r)),
        quorum=1,
    )
    assert await ours._nodes_found(responses) == node_record()
    assert reports == [(("127.0.0.1", 7000), "invalid-value:RemoteProtocolError")]


async def test_get_returns_the_highest_seq_not_the_most_common_value() -> None:
    key = node_record().dht_key()
    old, new = node_record(seq=1).encode(), node_record(seq=2).encode()
    peers, responses = answers([old, old, new, forged_record().encode()])
    stock = ValueSpiderCrawl(FakeProtocol(), Node(key), peers, 20, 3)
    assert await stock._nodes_found(dict(list(responses.items())[:3])) == old  # kademlia: the majority wins
    protocol = FakeProtocol()
    reports: list[tuple[Peer, str]] = []
    ours = RecordSpiderCrawl(
        protocol,  # type: ignore[arg-type]
        Node(key),
        peers,
        20,
        3,
        clock=FakeClock(),
        report=lambda p, r: reports.append((p, r)),
        quorum=3,
    )
    assert await ours._nodes_found(responses) == node_record(seq=2)
    # The stale replicas are repaired.
    assert sorted(peer.port for peer, value in protocol.stored if value == new) == [7000, 7001]
    assert reports == [(("127.0.0.1", 7003), "invalid-value:SignatureError")]


async def test_get_over_a_network_with_poisoned_and_stale_replicas() -> None:
    config = DHTConfig(ksize=20, rpc_timeout=0.3, value_quorum=20)
    async with network(4, config=config) as nodes:
        key = ALICE.aura_id.dht_key()
        for honest in nodes[1:3]:
            honest.storage.accept(key, node_record(seq=2).encode())
        async with stock_node(1, nodes[1].address) as poisoner, stock_node(2, nodes[2].address) as stale:
            poisoner.storage[key] = [1, 2, 3]
            stale.storage[key] = node_record(seq=1).encode()
            assert await nodes[0].bootstrap([nodes[1].address])
            assert await nodes[0].get_record(key) == node_record(seq=2)
            assert nodes[0].misbehaviour == {address_of(poisoner): 1}
            assert stale.storage.get(key) == node_record(seq=2).encode()  # repaired
            assert await nodes[3].get_record(key) == node_record(seq=2)


# -- poisoning through store: rejected, counted, node still healthy ---------------------------------


async def test_poisoned_stores_are_rejected_and_counted_while_the_node_keeps_serving() -> None:
    async with network(3, config=DHTConfig(ksize=20, rpc_timeout=0.3)) as nodes:
        target = nodes[1]
        await nodes[0].put(node_record(seq=2))
        await nodes[0].put(claim())
        async with stock_node(1, nodes[0].address) as attacker:
            me = attacker.node.id
            key = ALICE.aura_id.dht_key()
            attempts = {
                "forged": (key, forged_record().encode()),
                "stale": (key, node_record(seq=1).encode()),
                "oversized": (key, b"\x01" * 1500),
                "list": (key, [1, 2, 3]),
                "wrong key": (BOB.aura_id.dht_key(), node_record(seq=3).encode()),
                "handle taken": (claim().dht_key(), claim(MALLORY, "alice", seq=5).encode()),
            }
            for what, (k, value) in attempts.items():
                assert await attacker.protocol.store(target.address, me, k, value) == (True, False), what
            assert target.misbehaviour[address_of(attacker)] == len(attempts)
        assert target.reasons == {
            f"rejected-store:{SignatureError.__name__}": 1,  # forged
            f"rejected-store:{StaleRecord.__name__}": 1,  # stale
            f"rejected-store:{RemoteProtocolError.__name__}": 3,  # oversized, list, wrong key
            f"rejected-store:{HandleTaken.__name__}": 1,  # handle taken
        }
        assert target.storage.record(key) == node_record(seq=2)
        assert await nodes[2].get_record(claim().dht_key()) == claim()
        assert await nodes[2].get_record(key) == node_record(seq=2)


# -- defect 5: unsafe RPC handling ----------------------------------------------------------------


async def test_kademlia_raises_on_garbage_and_serves_stun() -> None:
    stock = KademliaProtocol(Node(node_id(1)), ForgetfulStorage(), 20)
    with pytest.raises(umsgpack.UnpackException):
        await stock._solve_datagram(b"\x00" + b"m" * 20 + b"\xc1\xc1", ("127.0.0.1", 9))
    sent: list[bytes] = []

    class Transport:
        def sendto(self, data: bytes, addr: Peer) -> None:
            sent.append(data)

    stock.transport = Transport()
    await stock._accept_request(b"m" * 20, ["stun", []], ("127.0.0.1", 9))
    assert umsgpack.unpackb(sent[0][21:]) == ["127.0.0.1", 9]


async def test_garbage_datagrams_are_counted_and_the_node_stays_healthy() -> None:
    rng = random.Random(4)
    async with network(2) as nodes, raw_peer() as peer:
        target = nodes[1]
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        mid = b"g" * 20
        garbage = [
            b"\x00",
            b"\x00" + mid,  # header only
            b"\x07" + mid + umsgpack.packb(["ping", [node_id(9)]]),  # unknown message type
            b"\x00" + mid + b"\xc1",  # reserved msgpack code
            b"\x00" + mid + b"\x92\xa4",  # truncated
            b"\x00" + mid + umsgpack.packb(["stun", []]),
            b"\x00" + mid + umsgpack.packb(["__init__", []]),
            b"\x00" + mid + umsgpack.packb(["ping", []]),
            b"\x00" + mid + umsgpack.packb(["ping", [b"short"]]),
            b"\x00" + mid + umsgpack.packb(["find_node", [node_id(9), [1]]]),
            b"\x00" + mid + umsgpack.packb({"ping": 1}),
            b"\x00" + mid + umsgpack.packb([1, 2]),
            b"\x00" + mid + umsgpack.packb([[1], []]),  # unhashable method name
            b"\x00" + mid + umsgpack.packb([{"a": 1}, [node_id(9)]]),
            b"\x00" + mid + b"\x00" * 9000,  # oversized
            b"\x01" + mid + umsgpack.packb(node_id(9)),  # a response nobody asked for: ignored, not counted
            *(bytes([0]) + rng.randbytes(rng.randrange(21, 300)) for _ in range(20)),
        ]
        for datagram in garbage:
            peer.send(datagram, target.address)
        assert await peer.ping(target.address) == target.node.id
        assert target.misbehaviour[peer.address] == len(garbage) - 1  # all but the unsolicited response
        assert target.reasons["forbidden-rpc"] == 2
        assert errors == []
        assert await nodes[0].put(node_record()) == 1
        assert await target.get_record(ALICE.aura_id.dht_key()) == node_record()


async def test_a_reply_from_another_address_than_the_one_asked_is_ignored_and_counted() -> None:
    async with network(1) as nodes, raw_peer() as asked, raw_peer() as spoofer:
        asker = nodes[0]
        assert asker.protocol is not None
        pending = asker.protocol.ping(asked.address, asker.node.id)
        msg_id = (await asyncio.wait_for(asked.replies.get(), 2.0))[1:21]
        spoofer.send(b"\x01" + msg_id + umsgpack.packb(node_id(66)), asker.address)
        asked.send(b"\x01" + msg_id + umsgpack.packb(node_id(5)), asker.address)
        assert await pending == (True, node_id(5))
        assert asker.misbehaviour == {spoofer.address: 1}
        assert asker.reasons == {"response-from-wrong-address": 1}


async def test_requests_beyond_the_per_peer_rate_are_dropped_until_tokens_refill() -> None:
    clock = FakeClock()
    config = DHTConfig(ksize=4, rpc_timeout=0.3, rate_limit=RateLimit(rate=5.0, burst=5.0))
    async with network(1, config=config, clock=clock) as nodes, raw_peer() as peer:
        target = nodes[0]
        for i in range(15):
            peer.send(b"\x00" + bytes([i]) * 20 + umsgpack.packb(["ping", [node_id(9)]]), target.address)
        replies = [await asyncio.wait_for(peer.replies.get(), 2.0) for _ in range(5)]
        assert [reply[1] for reply in replies] == [0, 1, 2, 3, 4]
        clock.now += 1.0
        assert await peer.ping(target.address) == target.node.id
        assert peer.replies.empty()
        assert target.reasons["rate-limited"] == 10
        assert target.misbehaviour[peer.address] == 10


async def test_a_response_over_the_size_bound_is_not_sent() -> None:
    config = DHTConfig(ksize=20, rpc_timeout=0.3, max_datagram=200)
    async with network(8, config=config) as nodes:
        asker, target = nodes[1], nodes[0]
        assert asker.protocol is not None
        assert len(target.protocol.router.find_neighbors(Node(node_id(77)))) == 7  # type: ignore[union-attr]
        assert await asker.protocol.find_node(target.address, asker.node.id, node_id(77)) == (False, None)
        assert await asker.protocol.ping(target.address, asker.node.id) == (True, target.node.id)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=24) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
requests = st.builds(
    lambda method, args: [method, args],
    st.sampled_from([*sorted(ALLOWED_RPCS), "stun", "__getattr__", ""]) | st.text(max_size=8) | msgpack_values,
    st.lists(st.binary(min_size=20, max_size=20) | msgpack_values, max_size=4) | msgpack_values,
)
datagrams = st.one_of(
    st.binary(max_size=600),
    st.builds(
        lambda kind, mid, body: bytes([kind]) + mid + umsgpack.packb(body),
        st.sampled_from([0, 0, 0, 1, 2]),
        st.binary(min_size=20, max_size=20),
        requests | msgpack_values,
    ),
)


async def feed(datagram: bytes) -> tuple[list[bytes], Counter[Peer]]:
    """Hand one datagram to a fresh protocol holding one record; return what it sent and whom it blamed."""
    clock = FakeClock()
    storage = RecordStorage(clock)
    storage.accept(ALICE.aura_id.dht_key(), node_record().encode())
    misbehaviour: Counter[Peer] = Counter()
    protocol = AuraKademliaProtocol(
        Node(node_id(1)), storage, 4, config=FAST, clock=clock, report=lambda p, r: misbehaviour.update([p])
    )
    sent: list[bytes] = []

    class Transport:
        def sendto(self, data: bytes, addr: Peer) -> None:
            sent.append(data)

        def is_closing(self) -> bool:
            return False

    protocol.connection_made(Transport())
    protocol.datagram_received(datagram, ("127.0.0.1", 9))
    protocol.close()
    await protocol.drain()
    return sent, misbehaviour


def test_any_datagram_is_answered_or_counted_and_never_raises() -> None:
    """The h11 invariant for our RPC layer: every request is served, or counted against its sender."""
    with asyncio.Runner() as runner:

        @settings(max_examples=300)
        @given(datagrams)
        def check(datagram: bytes) -> None:
            sent, misbehaviour = runner.run(feed(datagram))
            is_response = len(datagram) > 21 and datagram[0] == 1
            assert len(sent) + misbehaviour[("127.0.0.1", 9)] == (0 if is_response else 1)

        check()


async def test_refresh_republishes_records_unchanged_for_an_hour() -> None:
    clock = FakeClock()
    async with network(6, clock=clock) as nodes:
        key = ALICE.aura_id.dht_key()
        nodes[5].storage.accept(key, node_record(ttl=7200).encode())
        assert sum(key in node.storage for node in nodes) == 1
        await nodes[5].refresh()
        assert sum(key in node.storage for node in nodes) == 1
        clock.now += 3600
        await nodes[5].refresh()
        assert sum(key in node.storage for node in nodes) >= FAST.ksize


# -- defects 6 and 7: pickle state and defaults -----------------------------------------------------


async def test_pickle_state_files_are_refused() -> None:
    server = DHTServer(node_id(1), clock=FakeClock())
    with pytest.raises(UnsafeOperation):
        server.save_state("/tmp/never-written")
    with pytest.raises(UnsafeOperation):
        server.save_state_regularly("/tmp/never-written")
    with pytest.raises(UnsafeOperation):
        await DHTServer.load_state("/tmp/never-read", 0, "127.0.0.1")


async def test_listen_needs_an_interface_and_rpcs_time_out_after_about_a_second() -> None:
    assert inspect.signature(Server.listen).parameters["interface"].default == "0.0.0.0"
    assert inspect.signature(DHTServer.listen).parameters["interface"].default is inspect.Parameter.empty
    server = DHTServer(node_id(1), clock=FakeClock())
    await server.listen(0, interface="127.0.0.1")
    try:
        assert server.address[0] == "127.0.0.1" and server.address[1] != 0
        assert server.protocol is not None
        assert server.protocol._wait_timeout == 1.0
        assert KademliaProtocol(Node(node_id(2)), ForgetfulStorage(), 20)._wait_timeout == 5
    finally:
        server.stop()


def test_node_ids_and_keys_are_twenty_bytes() -> None:
    with pytest.raises(AuralinkError):
        DHTServer(b"short", clock=FakeClock())


def test_public_api() -> None:
    assert sorted(dht.__all__) == [
        "DHTConfig",
        "DHTError",
        "DHTServer",
        "PeerRateLimiter",
        "PublishFailed",
        "RateLimit",
        "RecordStorage",
        "UnsafeOperation",
        "check_value",
    ]


def test_record_kinds_are_records() -> None:
    record: Record = node_record()
    assert dht.check_value(record.dht_key(), record.encode(), T0) == record
