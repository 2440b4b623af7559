"""The DHT (issue 4): real kademlia nodes on 127.0.0.1, each fixed defect with its regression test.

Every regression test that can shows both sides: kademlia 2.2.3's own code misbehaving on the same
input (so the test notices if an upgrade changes it), and ours doing the right thing. Node IDs and
keys are seeded; nothing sleeps: tests await the operations themselves, and a probe ping after a
batch of datagrams proves the batch was processed (UDP on loopback keeps order).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from kademlia.crawling import NodeSpiderCrawl, ValueSpiderCrawl
from kademlia.network import Server
from kademlia.node import Node
from kademlia.protocol import KademliaProtocol
from kademlia.routing import KBucket, RoutingTable
from kademlia.storage import ForgetfulStorage

from auralink.errors import (
    AuralinkError,
    HandleTaken,
    LocalProtocolError,
    RemoteProtocolError,
    SignatureError,
    StaleRecord,
)
from auralink.identity import HandleClaim, Identity, NodeRecord, Record
from auralink.wire.address import Address
from auralink_node import dht
from auralink_node.dht import DHTConfig, DHTServer, PublishFailed, RateLimit, RecordStorage, UnsafeOperation
from auralink_node.dht.core import Lookup, PeerState, RttEstimator
from auralink_node.dht.server import (
    ALLOWED_RPCS,
    AuraKademliaProtocol,
    ClosestNodesCrawl,
    CompleteRoutingTable,
    RecordSpiderCrawl,
)

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


def replication_targets(
    welcome: Callable[[KademliaProtocol, Node], None], protocol: KademliaProtocol, newcomer: Node | None = None
) -> list[bytes]:
    """Which keys ``welcome`` sends to ``newcomer`` (by default, a node right next to Alice's record's key)."""
    sent: list[bytes] = []

    def call_store(node: Node, key: bytes, value: bytes) -> Coroutine[Any, Any, None]:
        sent.append(key)
        return asyncio.sleep(0)

    protocol.call_store = call_store
    welcome(protocol, newcomer or Node(xor_id(node_record().dht_key(), 1), "127.0.0.1", 9))
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


def test_welcoming_a_new_node_sends_what_the_section_2_5_rule_says_for_every_table() -> None:
    """The fast evaluation in ``welcome_if_new`` agrees with the rule as kademlia writes it (fix 1 applied)."""
    rng = random.Random(25)
    records = [node_record(Identity.from_seed(bytes([40 + i]) * 32)) for i in range(12)]
    outcomes: Counter[bool] = Counter()
    for _ in range(60):
        clock = FakeClock()
        storage = RecordStorage(clock)
        for record in records:
            storage.accept(record.dht_key(), record.encode())
        anchor = rng.choice(records).dht_key()

        def near(bits: int, anchor: bytes = anchor) -> bytes:
            return xor_id(anchor, rng.getrandbits(bits))

        protocol = AuraKademliaProtocol(
            Node(near(rng.choice([4, 40, 160]))), storage, 4, config=FAST, clock=clock, report=lambda p, r: None
        )
        protocol.spawn = lambda coro: coro.close()  # type: ignore[method-assign]  # pings of full buckets
        for _ in range(rng.randrange(40)):
            protocol.router.add_contact(Node(near(rng.choice([8, 40, 160])), "127.0.0.1", 9))
        newcomer = Node(near(rng.choice([6, 40, 160])), "127.0.0.1", 10)
        expected = []
        for key, _ in storage:
            neighbors = protocol.router.find_neighbors(Node(key))
            if not neighbors or (
                newcomer.distance_to(Node(key)) < neighbors[-1].distance_to(Node(key))
                and protocol.source_node.distance_to(Node(key)) < neighbors[0].distance_to(Node(key))
            ):
                expected.append(key)
        assert replication_targets(AuraKademliaProtocol.welcome_if_new, protocol, newcomer) == expected
        outcomes[bool(expected)] += 1
    assert outcomes[True] >= 5 and outcomes[False] >= 5  # both branches were exercised


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
    """Just enough protocol for a lookup whose answers a test supplies: every query is answered at once."""

    def __init__(self, responses: dict[bytes, tuple[bool, object]] | None = None) -> None:
        self.source_node = Node(node_id(999))
        self.rtt = RttEstimator(floor=0.05, ceiling=1.0)
        self.responses = responses or {}
        self.asked: list[Node] = []
        self.stored: list[tuple[Node, bytes]] = []
        self.background: list[Coroutine[Any, Any, object]] = []
        self.suspect: Callable[[bytes], bool] | None = None

    def query(self, peer: Node, method: str, key: bytes) -> asyncio.Future[tuple[bool, object]]:
        self.asked.append(peer)
        future: asyncio.Future[tuple[bool, object]] = asyncio.get_running_loop().create_future()
        future.set_result(self.responses.get(peer.id, (False, None)))
        return future

    async def call_store(self, peer: Node, key: bytes, value: bytes) -> tuple[bool, bool]:
        self.stored.append((peer, value))
        return (True, True)

    async def call_find_node(self, peer: Node, node: Node) -> tuple[bool, object]:
        """kademlia's crawls call this; ours call :meth:`query`."""
        return await self.query(peer, "find_node", node.id)

    async def call_find_value(self, peer: Node, node: Node) -> tuple[bool, object]:
        return await self.query(peer, "find_value", node.id)

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        self.background.append(coro)

    async def drain(self) -> None:
        for coro in self.background:
            await coro


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
        FakeProtocol(responses),  # type: ignore[arg-type]
        Node(key),
        peers,
        20,
        3,
        clock=FakeClock(),
        report=lambda p, r: reports.append((p, r)),
        quorum=1,
    )
    assert await ours.find() == node_record()
    assert reports == [(("127.0.0.1", 7000), "invalid-value:RemoteProtocolError")]


async def test_get_returns_the_highest_seq_not_the_most_common_value() -> None:
    key = node_record().dht_key()
    old, new = node_record(seq=1).encode(), node_record(seq=2).encode()
    peers, responses = answers([old, old, new, forged_record().encode()])
    stock = ValueSpiderCrawl(FakeProtocol(), Node(key), peers, 20, 3)
    assert await stock._nodes_found(dict(list(responses.items())[:3])) == old  # kademlia: the majority wins
    protocol = FakeProtocol(responses)
    reports: list[tuple[Peer, str]] = []
    ours = RecordSpiderCrawl(
        protocol,  # type: ignore[arg-type]
        Node(key),
        peers,
        20,
        4,  # all four asked at once, so the quorum of 3 valid answers comes from all of them
        clock=FakeClock(),
        report=lambda p, r: reports.append((p, r)),
        quorum=3,
    )
    assert await ours.find() == node_record(seq=2)
    # The stale replicas are repaired.
    await protocol.drain()
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
            await drain(nodes)
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
            # The node still serves the same peer's valid requests, reads and writes alike.
            answer = await attacker.protocol.find_value(target.address, me, key)
            assert answer == (True, {"value": node_record(seq=2).encode()})
            assert await attacker.protocol.store(target.address, me, key, node_record(seq=3).encode()) == (True, True)
            assert target.misbehaviour[address_of(attacker)] == len(attempts)
        assert target.reasons == {
            f"rejected-store:{SignatureError.__name__}": 1,  # forged
            f"rejected-store:{StaleRecord.__name__}": 1,  # stale
            f"rejected-store:{RemoteProtocolError.__name__}": 3,  # oversized, list, wrong key
            f"rejected-store:{HandleTaken.__name__}": 1,  # handle taken
        }
        assert target.storage.record(key) == node_record(seq=3)
        assert await nodes[2].get_record(claim().dht_key()) == claim()
        assert await nodes[2].get_record(key) == node_record(seq=3)


async def test_poisoned_values_in_replies_are_ignored_and_counted_against_the_peer_that_served_them() -> None:
    config = DHTConfig(ksize=20, rpc_timeout=0.3, value_quorum=20)
    key = ALICE.aura_id.dht_key()
    poisons: dict[str, object] = {
        "forged": forged_record().encode(),
        "oversized": b"\x01" * 1500,
        "list": [1, 2, 3],
        "wrong key": node_record(BOB).encode(),
    }
    async with network(3, config=config) as nodes, contextlib.AsyncExitStack() as stack:
        nodes[1].storage.accept(key, node_record().encode())
        poisoners = {}
        for seed, (what, value) in enumerate(poisons.items()):
            poisoner = await stack.enter_async_context(stock_node(10 + seed, nodes[1].address))
            poisoner.storage[key] = value
            poisoners[what] = address_of(poisoner)
        asker = nodes[0]
        assert await asker.bootstrap([nodes[1].address])
        assert await asker.get_record(key) == node_record()
        assert asker.misbehaviour == {address: 1 for address in poisoners.values()}
        assert asker.reasons == {
            f"invalid-value:{SignatureError.__name__}": 1,  # forged
            f"invalid-value:{RemoteProtocolError.__name__}": 3,  # oversized, list, wrong key
        }
        assert await asker.get_record(claim().dht_key()) is None  # still looks things up
        await asker.put(claim())
        assert await nodes[2].get_record(claim().dht_key()) == claim()


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


# -- defect 8: lookups stalled on dead contacts ----------------------------------------------------


def ranked(target: bytes, count: int, first: int = 300) -> list[Node]:
    """``count`` contacts, closest to ``target`` first."""
    peers = [Node(node_id(first + i), "127.0.0.1", 7300 + i) for i in range(count)]
    return sorted(peers, key=Node(target).distance_to)


def test_the_rto_follows_rfc_6298_within_its_clamps() -> None:
    rtt = RttEstimator(floor=0.05, ceiling=1.0)
    assert rtt.rto == 1.0  # before any sample, like RFC 6298's initial 1 s
    rtt.sample(0.2)  # section 2.2: SRTT = R, RTTVAR = R/2
    assert (rtt.srtt, rtt.rttvar, rtt.rto) == pytest.approx((0.2, 0.1, 0.6))
    rtt.sample(0.1)  # section 2.3: RTTVAR = 3/4 * 0.1 + 1/4 * |0.2 - 0.1|, SRTT = 7/8 * 0.2 + 1/8 * 0.1
    assert (rtt.srtt, rtt.rttvar, rtt.rto) == pytest.approx((0.1875, 0.1, 0.5875))
    for _ in range(200):
        rtt.sample(0.001)  # loopback: srtt + 4 * rttvar is about 1 ms
    assert rtt.rto == 0.05
    rtt.sample(30.0)
    assert rtt.rto == 1.0
    with pytest.raises(LocalProtocolError):
        RttEstimator(floor=0.0, ceiling=1.0)


def test_a_lookup_keeps_alpha_queries_active_and_asks_the_next_peer_when_one_replies() -> None:
    target = node_id(77)
    peers = ranked(target, 8)
    lookup = Lookup(target, peers[3:], ksize=4, alpha=3, max_queries=32)
    assert lookup.queries_due(0.0, 0.5) == peers[3:6]  # the three closest known
    assert lookup.queries_due(0.0, 0.5) == []
    lookup.replied(peers[3].id, [peers[0]])  # a reply names a closer peer...
    assert lookup.queries_due(0.001, 0.5) == [peers[0]]  # ...asked at once, while two queries are still out
    assert lookup.active(0.001) == 3
    assert lookup.state(peers[4].id) is PeerState.WAITING


def test_a_query_past_its_patience_frees_its_slot_and_a_late_reply_still_counts() -> None:
    target = node_id(78)
    peers = ranked(target, 6)
    lookup = Lookup(target, peers[1:], ksize=3, alpha=2, max_queries=32)
    assert lookup.queries_due(0.0, 0.25) == peers[1:3]
    assert lookup.next_deadline(0.0) == 0.25
    assert lookup.queries_due(0.2, 0.25) == []
    assert lookup.queries_due(0.25, 0.25) == peers[3:5]  # both slow: two more peers asked
    lookup.replied(peers[1].id, [peers[0]])  # the slow peer answers after all, naming a closer one
    assert lookup.state(peers[1].id) is PeerState.REPLIED
    lookup.replied(peers[3].id)
    assert lookup.queries_due(0.3, 0.25) == [peers[0]]


def test_a_lookup_finishes_once_the_k_closest_live_peers_replied_without_waiting_for_a_silent_one() -> None:
    target = node_id(79)
    peers = ranked(target, 5)
    lookup = Lookup(target, peers, ksize=3, alpha=3, max_queries=32)
    assert lookup.queries_due(0.0, 0.1) == peers[:3]
    lookup.replied(peers[1].id)
    lookup.replied(peers[2].id)
    assert not lookup.finished(0.05)  # the closest peer may still answer
    assert lookup.queries_due(0.05, 0.1) == []
    assert lookup.queries_due(0.1, 0.1) == [peers[3]]  # it is slow now: the next one takes its place
    lookup.replied(peers[3].id)
    assert lookup.finished(0.1)
    assert lookup.closest() == peers[1:4]
    lookup.replied(peers[0].id)  # a late answer still counts
    assert lookup.closest() == peers[:3]


def test_suspect_peers_are_asked_after_every_trusted_peer_in_the_window_but_still_count() -> None:
    target = node_id(81)
    peers = ranked(target, 6)
    suspects = {peers[0].id, peers[2].id}
    lookup = Lookup(target, peers, ksize=4, alpha=2, max_queries=32, suspect=suspects.__contains__)
    assert lookup.queries_due(0.0, 0.5) == [peers[1], peers[3]]  # the closest trusted ones first
    lookup.replied(peers[1].id)
    lookup.replied(peers[3].id)
    assert lookup.queries_due(0.01, 0.5) == [peers[0], peers[2]]  # then the suspects: the window is still the k closest
    lookup.replied(peers[0].id)
    lookup.replied(peers[2].id)
    assert lookup.finished(0.02)
    assert lookup.closest() == peers[:4]
    assert lookup.state(peers[4].id) is PeerState.HEARD  # no trusted peer outside the window was asked instead


def test_a_lookup_sends_at_most_its_query_budget() -> None:
    target = node_id(80)
    lookup = Lookup(target, ranked(target, 3), ksize=20, alpha=3, max_queries=5)
    fresh = iter(range(1000, 2000))
    for step in range(100):  # every reply names three new peers: only the budget ends this lookup
        now = step * 0.001
        for peer in lookup.queries_due(now, 1.0):
            lookup.replied(peer.id, [Node(node_id(next(fresh)), "127.0.0.1", 9) for _ in range(3)])
        if lookup.finished(now):
            break
    assert lookup.queried == 5
    assert lookup.finished(now)
    with pytest.raises(LocalProtocolError):
        Lookup(target, [], ksize=20, alpha=0, max_queries=5)


async def test_a_peer_that_failed_is_neither_asked_again_nor_returned_when_others_name_it() -> None:
    target = Node(node_id(81))
    dead, *live = ranked(target.id, 4)
    naming_dead = (True, [[dead.id, dead.ip, dead.port]])
    responses: dict[bytes, tuple[bool, object]] = {peer.id: naming_dead for peer in live}
    # kademlia's NodeHeap takes the dead peer back as "contacted", so the crawl returns it.
    stock = await NodeSpiderCrawl(FakeProtocol(responses), target, [dead, *live], 20, 3).find()
    assert dead.id in [peer.id for peer in stock]
    protocol = FakeProtocol(responses)
    ours = await ClosestNodesCrawl(protocol, target, [dead, *live], 20, 3).find()  # type: ignore[arg-type]
    assert ours == live
    assert [peer.id for peer in protocol.asked].count(dead.id) == 1


class SilentPeers(FakeProtocol):
    """Peers in ``dead`` never answer: their RPCs fail after ``timeout`` seconds, like a real RPC timeout."""

    def __init__(self, responses: dict[bytes, tuple[bool, object]], dead: list[Node], timeout: float) -> None:
        super().__init__(responses)
        self.dead = {peer.id for peer in dead}
        self.timeout = timeout
        self.unanswered: list[asyncio.Future[tuple[bool, object]]] = []
        self.rtt.sample(0.001)  # replies have been fast: a query is slow after the 50 ms floor

    def query(self, peer: Node, method: str, key: bytes) -> asyncio.Future[tuple[bool, object]]:
        if peer.id not in self.dead:
            return super().query(peer, method, key)
        self.asked.append(peer)
        future: asyncio.Future[tuple[bool, object]] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(self.timeout, future.set_result, (False, None))
        self.unanswered.append(future)
        return future


async def test_a_value_lookup_moves_past_dead_peers_instead_of_waiting_for_the_whole_round() -> None:
    key = node_record().dht_key()
    peers = ranked(key, 5)
    dead, live = peers[:3], peers[3:]  # the three closest, asked first, are dead
    responses: dict[bytes, tuple[bool, object]] = {peer.id: (True, {"value": node_record().encode()}) for peer in live}

    def crawl(protocol: SilentPeers, quorum: int) -> RecordSpiderCrawl:
        return RecordSpiderCrawl(
            protocol,  # type: ignore[arg-type]
            Node(key),
            peers,
            20,
            3,
            clock=FakeClock(),
            report=lambda p, r: None,
            quorum=quorum,
        )

    ours = SilentPeers(responses, dead, timeout=1.0)
    assert await crawl(ours, 2).find() == node_record()
    assert not any(future.done() for future in ours.unanswered)  # returned while the dead were still out
    assert len(ours.asked) == 5
    # kademlia awaits every query of a round (asyncio.gather) before it asks anyone else.
    stock = SilentPeers(responses, dead, timeout=0.2)
    assert await ValueSpiderCrawl(stock, Node(key), peers, 20, 3).find() == node_record().encode()
    assert all(future.done() for future in stock.unanswered)


async def test_a_contact_that_never_answers_a_query_leaves_the_routing_table() -> None:
    clock = FakeClock()
    config = DHTConfig(ksize=4, rpc_timeout=0.05)
    protocol = AuraKademliaProtocol(
        Node(node_id(1)), RecordStorage(clock), 4, config=config, clock=clock, report=lambda p, r: None
    )

    class Transport:
        def sendto(self, data: bytes, addr: Peer) -> None:
            pass

        def is_closing(self) -> bool:
            return False

    protocol.connection_made(Transport())
    silent = Node(node_id(2), "127.0.0.1", 9)
    protocol.router.add_contact(silent)
    future = protocol.query(silent, "find_node", node_id(3))  # nobody awaits it: the lookup moved on
    assert protocol.rpcs_sent == {"find_node": 1}
    assert await future == (False, None)
    assert protocol.router.find_neighbors(Node(node_id(3))) == []
    assert protocol.rpcs_unanswered == {"find_node": 1}


async def test_answered_rpcs_feed_the_rto_and_lookups_count_their_rpcs() -> None:
    async with network(8) as nodes:
        asker = nodes[3]
        assert asker.protocol is not None
        assert await nodes[1].put(node_record()) >= 1
        sent = asker.protocol.rpcs_sent["find_value"]
        assert await asker.get_record(ALICE.aura_id.dht_key()) == node_record()
        assert 1 <= asker.protocol.rpcs_sent["find_value"] - sent <= 8
        assert asker.protocol.rtt.srtt is not None
        assert FAST.min_rto <= asker.protocol.rtt.rto < FAST.rpc_timeout


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
