"""Discovery between real in-process nodes on loopback: the DHT on the QUIC socket, pins, rotations."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from kademlia.node import Node as KademliaNode

from auralink.errors import ResolveFailed
from auralink.identity import Identity
from auralink_node.reputation import Role
from tests.nodes import make_home, running


async def test_the_dht_shares_the_quic_port_and_records_resolve_across_it(tmp_path: Path) -> None:
    async with (
        running(make_home(tmp_path, "b")) as b,
        running(make_home(tmp_path, "c"), handle="@carol.aura") as c,
        running(make_home(tmp_path, "a")) as a,
    ):
        b_addr = str(b.listen_addresses[0])
        assert await c.discovery.join([b_addr]) == [b_addr]
        assert c.discovery.last_publish["accepted"] == 1  # b holds c's record and claim now
        assert await a.discovery.join([b_addr, "127.0.0.1:9"]) == [b_addr]  # nothing answers on discard
        assert a.discovery.contact_count() == 2  # b, and c found by the lookup of our own ID

        resolution = await a.resolve("@carol.aura")
        assert resolution.aura_id == c.aura_id and resolution.source == "dht"
        assert resolution.addresses == tuple(c.listen_addresses)
        assert resolution.record is not None and resolution.record.seq == c.record.seq
        assert resolution.warning is None
        assert a.store.pin("@carol.aura") == (str(c.aura_id), pytest.approx(time.time(), abs=60))

        by_key = await a.resolve(str(c.aura_id))
        assert by_key.aura_id == c.aura_id and by_key.source == "cache" and by_key.handle == "@carol.aura"

        report = await a.ping(c.aura_id, count=1)  # no address given: found through resolution
        assert report.received == 1


async def test_a_new_address_is_published_with_seq_plus_one(tmp_path: Path) -> None:
    async with running(make_home(tmp_path, "b")) as b, running(make_home(tmp_path, "c"), handle="@carol.aura") as c:
        await c.discovery.join([str(b.listen_addresses[0])])
        before = c.record.seq
        c._resign()  # what check_addresses() does when the interfaces change
        await c.discovery._publish_now()
        assert c.record.seq == before + 1
        held = b.discovery.dht.storage.record(c.aura_id.dht_key())
        assert held is not None and held.seq == before + 1


async def test_a_handle_that_changes_key_without_rotation_warns(tmp_path: Path) -> None:
    impostor = Identity.generate().aura_id
    async with (
        running(make_home(tmp_path, "b")) as b,
        running(make_home(tmp_path, "c"), handle="@carol.aura") as c,
        running(make_home(tmp_path, "a")) as a,
    ):
        await c.discovery.join([str(b.listen_addresses[0])])
        await a.discovery.join([str(b.listen_addresses[0])])
        a.store.set_pin("@carol.aura", impostor, 1_000_000.0)  # as if @carol.aura had been another key

        resolution = await a.resolve("@carol.aura")
        assert resolution.aura_id == c.aura_id
        assert resolution.pinned == impostor
        assert resolution.warning is not None and "pinned to" in resolution.warning
        assert a.store.pin("@carol.aura") == (str(impostor), 1_000_000.0)  # the pin stays until forgotten


async def test_a_key_rotation_moves_the_handle_and_the_pin_follows(tmp_path: Path) -> None:
    carol = make_home(tmp_path, "c")
    async with running(make_home(tmp_path, "b")) as b, running(make_home(tmp_path, "a")) as a:
        b_addr = str(b.listen_addresses[0])
        await a.discovery.join([b_addr])
        async with running(carol, handle="@carol.aura") as c:
            await c.discovery.join([b_addr])
            old = c.aura_id
        assert (await a.resolve("@carol.aura")).aura_id == old

        new, _ = carol.keystore().rotate(now=time.time())
        async with running(carol, handle="@carol.aura") as c:
            await c.discovery.join([b_addr])
            published = c.discovery.last_publish
            assert published["accepted"] >= 1 and published["error"] is None  # the rotated key took the handle
            a.discovery._fetched.clear()  # let the cache age out
            resolution = await a.resolve("@carol.aura")
        assert resolution.aura_id == new.aura_id
        assert resolution.warning is None
        assert a.store.pin("@carol.aura") is not None
        assert a.store.pin("@carol.aura")[0] == str(new.aura_id)  # type: ignore[index]


async def test_an_unknown_target_fails_and_is_remembered(tmp_path: Path) -> None:
    async with running(make_home(tmp_path, "b")) as b, running(make_home(tmp_path, "a")) as a:
        await a.discovery.join([str(b.listen_addresses[0])])
        with pytest.raises(ResolveFailed, match="no valid claim"):
            await a.resolve("@nobody.aura")
        with pytest.raises(ResolveFailed, match="remembered"):
            await a.resolve("@nobody.aura")
        stranger = Identity.generate().aura_id
        with pytest.raises(ResolveFailed, match="no node record"):
            await a.resolve(stranger)
        assert a.discovery.status()["negative_cache"] == 2


async def test_garbage_on_the_shared_port_is_dropped_and_both_protocols_keep_working(tmp_path: Path) -> None:
    async with running(make_home(tmp_path, "b")) as b, running(make_home(tmp_path, "a")) as a:
        target = b.listen_addresses[0].as_tuple()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        try:
            sender = transport.get_extra_info("sockname")[:2]
            for first in range(0x40):  # every non-QUIC first byte: DHT-shaped or unclaimed
                for size in (1, 21, 22, 200):
                    transport.sendto(bytes([first]) + bytes(range(size - 1)), target)
            transport.sendto(b"\x00" + b"\xff" * 20 + b"\xc1", target)  # a DHT request with a bad body
        finally:
            transport.close()
        # The node keeps serving both protocols on the port the garbage hit.
        assert await a.discovery.join([str(b.listen_addresses[0])]) == [str(b.listen_addresses[0])]
        assert (await a.ping(b.aura_id, b.listen_addresses, count=1)).received == 1
        assert b.discovery.dht.misbehaviour[(sender[0], sender[1])] > 0


async def test_a_verified_peer_that_stores_forged_records_gets_strikes_and_a_ban_keeps_it_out(tmp_path: Path) -> None:
    async with running(make_home(tmp_path, "b")) as b, running(make_home(tmp_path, "a")) as a:
        await a.dial(b.aura_id, b.listen_addresses)  # b now knows a's key at a's address
        protocol = a.discovery.dht.protocol
        assert protocol is not None
        forged = bytearray(a.record.encode())
        forged[-1] ^= 1  # break the signature
        target = KademliaNode(b.aura_id.dht_key(), *b.listen_addresses[0].as_tuple())
        for _ in range(3):
            await protocol.call_store(target, a.aura_id.dht_key(), bytes(forged))
        now = b.wall_clock()
        standing = b.reputation.standing(Role.PEER, a.aura_id, now)
        assert standing.strikes > 0 or standing.banned  # three invalid records: a strike each, then a ban
        assert b.reputation.is_banned(Role.PEER, a.aura_id, now)
        assert not b.discovery._admit(KademliaNode(a.aura_id.dht_key(), "127.0.0.1", 1))
        assert b.discovery._admit(KademliaNode(bytes(20), "127.0.0.1", 1))  # strangers are let in


async def test_dht_lookups_ask_poorly_reputed_peers_last(tmp_path: Path) -> None:
    async with running(make_home(tmp_path, "b")) as b, running(make_home(tmp_path, "a")) as a:
        await a.dial(b.aura_id, b.listen_addresses)  # b knows a's key at a's address
        protocol = b.discovery.dht.protocol
        assert protocol is not None and protocol.suspect is not None
        assert not protocol.suspect(a.aura_id.dht_key())  # a verified stranger is trusted as much as anyone
        assert not protocol.suspect(bytes(20))  # and so is an unverified contact
        for _ in range(4):
            b.reputation.failure(Role.PEER, a.aura_id, b.wall_clock())
        assert protocol.suspect(a.aura_id.dht_key())
