"""Resolution at scale (issue 4 acceptance): 200 real DHT nodes on 127.0.0.1, then 30% of them stopped.

All nodes run in this process, on one event loop, each with its own UDP socket and the default
:class:`~auralink_node.dht.DHTConfig` (k=20, alpha=3, 1 s RPC timeout), so the protocol's real
timers run. Every node publishes a node record naming its DHT address and a claim to a handle;
every handle must resolve (claim -> AuraID -> node record with addresses) from a random querying
node. Then 60 nodes stop (socket closed, no goodbye) and at least 99% of all handles, the
stopped nodes' included, must still resolve from surviving nodes.

Deterministic: identities, querying nodes and stopped nodes come from fixed seeds, and each
protocol's generator is seeded by its node ID. Nothing sleeps: the test awaits the operations,
and resolutions run at most ``RESOLVE_CONCURRENCY`` at a time. No latency is asserted here;
``benchmarks/dht.py`` measures it. Nor does this test assert that no peer was reported as
misbehaving: another process on the host (a second run of this very test, with the same
identities and other addresses) may bind a stopped node's port and answer for it.
``tests/test_dht.py`` covers that accounting.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

from auralink.identity import HandleClaim, Identity, NodeRecord
from auralink.identity.records import handle_dht_key
from auralink.wire.address import Address
from auralink_node.dht import DHTServer

T0 = 1_700_000_000
NODES = 200
STOPPED = 60
"""30% of the nodes."""
PUBLISH_CONCURRENCY = 4
RESOLVE_CONCURRENCY = 20


def identity(i: int) -> Identity:
    return Identity.from_seed(hashlib.sha256(b"dht-scale-%d" % i).digest())


def handle(i: int) -> str:
    return f"scale-{i}"


async def resolve(querier: DHTServer, i: int) -> NodeRecord | None:
    """Handle claim, then the node record of the AuraID it names."""
    claim = await querier.get_record(handle_dht_key(handle(i)))
    if not isinstance(claim, HandleClaim):
        return None
    record = await querier.get_record(claim.aura_id.dht_key())
    return record if isinstance(record, NodeRecord) and record.addresses else None


async def resolve_all(nodes: list[DHTServer], queriers: list[int], rng: random.Random) -> list[NodeRecord | None]:
    """Every node's handle, each from a querying node drawn by ``rng``."""
    limit = asyncio.Semaphore(RESOLVE_CONCURRENCY)
    assignments = [(nodes[rng.choice(queriers)], i) for i in range(len(nodes))]

    async def one(querier: DHTServer, i: int) -> NodeRecord | None:
        async with limit:
            return await resolve(querier, i)

    return await asyncio.gather(*(one(querier, i) for querier, i in assignments))


async def test_every_handle_resolves_among_200_nodes_and_99_percent_after_30_percent_stop() -> None:
    identities = [identity(i) for i in range(NODES)]
    nodes = [DHTServer(ident.aura_id.dht_key(), clock=lambda: T0 + 10) for ident in identities]
    try:
        for node in nodes:
            await node.listen(0, interface="127.0.0.1")
        for node in nodes[1:]:
            await node.bootstrap([nodes[0].address])
        records = [
            NodeRecord.create(ident, seq=1, issued_at=T0, expires_at=T0 + 3600, addresses=[Address(*node.address)])
            for ident, node in zip(identities, nodes, strict=True)
        ]
        limit = asyncio.Semaphore(PUBLISH_CONCURRENCY)

        async def publish(i: int) -> tuple[int, int]:
            async with limit:
                claim = HandleClaim.create(identities[i], handle(i), seq=1, issued_at=T0, expires_at=T0 + 3600)
                return await nodes[i].put(records[i]), await nodes[i].put(claim)

        accepted = await asyncio.gather(*(publish(i) for i in range(NODES)))
        assert all(record >= 1 and claim >= 1 for record, claim in accepted)
        for node in nodes:
            assert node.protocol is not None
            await node.protocol.drain()

        rng = random.Random(2026)
        everyone = list(range(NODES))
        assert await resolve_all(nodes, everyone, rng) == records

        stopped = set(rng.sample(everyone, STOPPED))
        for i in stopped:
            nodes[i].stop()
        survivors = [i for i in everyone if i not in stopped]
        found = await resolve_all(nodes, survivors, rng)
        resolved = sum(record == expected for record, expected in zip(found, records, strict=True))
        assert resolved >= 0.99 * NODES, f"{resolved} of {NODES} handles resolved after {STOPPED} nodes stopped"
    finally:
        for node in nodes:
            node.stop()
