"""Path management on loopback: a relayed connection finds the direct path, then falls back when it dies."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from auralink.identity import Identity, RelayAddress
from auralink.wire import Address
from auralink_node.node import Node
from auralink_node.paths import CODEC, Offer
from auralink_node.transport import MeshStream, PeerConnection
from auralink_node.transport.endpoint import virtual_address
from tests.nodes import make_home, running
from tests.strategies import decode_or_protocol_error, round_trip
from tests.test_relay import ECHO, echo, echo_through, session


class Blackhole:
    """A sender that drops everything (a path whose NAT mapping or route died)."""

    path_name = "direct"

    def sendto(self, data: bytes, addr: Address) -> None:
        pass


async def test_a_relayed_connection_moves_to_direct_and_back_when_direct_goes_silent(tmp_path: Path) -> None:
    async with (
        running(make_home(tmp_path, "r"), relay=True) as r,
        running(make_home(tmp_path, "b"), relays=(f"{r.aura_id}@{r.listen_addresses[0]}",)) as b,
        running(make_home(tmp_path, "a")) as a,
    ):
        b.serve(ECHO, echo)
        await b.relay_links[r.aura_id].wait_ready(5.0)
        link = await session(a, r)
        a.book.put(b.record, a.wall_clock())  # as if resolved: b's record lists its relay
        conn = await a.endpoint.connect(b.aura_id, [], [link.path_to(b.aura_id)])
        assert conn.is_relayed
        paths_a = a.paths.peers[b.aura_id]
        # The offers, the punch, then the selector's dwell (3 s) before it trusts the direct path:
        # a generous bound, since the wait ends at the switch.
        await paths_a.wait_for_path("direct:", 20.0)
        why = a.paths.why(b.aura_id)
        assert why is not None and why["path"] == f"direct:{b.listen_addresses[0]}" and not why["relayed"]
        assert [h["reason"] for h in why["history"]][-1] in {"better", "failover"}
        assert {c["path"] for c in why["decision"]["candidates"]} >= {f"relay:{r.aura_id}", why["path"]}

        data = bytes(range(256)) * 16_000  # 4 MB, while the direct path dies
        async with await conn.open_stream(ECHO) as stream:
            transfer = asyncio.ensure_future(echo_through(stream, data))
            await asyncio.sleep(0)  # let the transfer start
            paths_b = b.paths.peers[a.aura_id]
            direct_a, direct_b = why["path"], f"direct:{a.listen_addresses[0]}"
            loop = asyncio.get_running_loop()
            died = loop.time()
            for paths, path in ((paths_a, direct_a), (paths_b, direct_b)):
                paths.senders[path] = (Blackhole(), paths.senders[path][1])
                if paths.conn.path == path:
                    paths.conn.set_path(Blackhole(), paths.conn.remote)
            await paths_a.wait_for_path("relay:", 10.0)
            print(f"failover to the relay {loop.time() - died:.2f} s after the direct path died")
            back = await transfer
        assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
        assert a.paths.why(b.aura_id)["history"][-1]["reason"] == "failover"  # type: ignore[index]


def connections_between(node: Node, peer: Node) -> list[PeerConnection]:
    return [c for c in node.endpoint.connections() if c.peer == peer.aura_id and c.is_ready]


async def counterpart(conn: PeerConnection, peer: Node) -> PeerConnection:
    """The peer's end of ``conn``: the connection an echo stream opened on ``conn`` arrives on."""
    seen: list[PeerConnection] = []

    async def record(stream: MeshStream) -> None:
        seen.append(stream.connection)
        await echo(stream)

    peer.serve("test/which/1", record)
    try:
        async with await conn.open_stream("test/which/1") as stream:
            assert await echo_through(stream, b"which") == b"which"
    finally:
        peer.unserve("test/which/1")
    return seen[0]


async def test_when_two_relays_authenticate_at_once_both_ends_keep_one_connection(tmp_path: Path) -> None:
    """A dial races the peer's relays; when two handshakes finish together, the loser is closed.

    Otherwise each end may manage (and probe with the key of) a different connection, and a
    failover finds no path that answers (the intermittent NAT-lab failure of 2026-11-26).
    """
    async with (
        running(make_home(tmp_path, "r1"), relay=True) as r1,
        running(make_home(tmp_path, "r2"), relay=True) as r2,
        running(make_home(tmp_path, "b")) as b,
        running(make_home(tmp_path, "a")) as a,
    ):
        await session(b, r1), await session(b, r2)
        links = [await session(a, r1), await session(a, r2)]
        for _ in range(5):  # several races, each with both relays starting at once (no direct address)
            conn = await a.endpoint.connect(b.aura_id, [], [link.path_to(b.aura_id) for link in links])
            assert connections_between(a, b) == [conn]
            kept = await counterpart(conn, b)
            async with asyncio.timeout(10.0):
                for other in connections_between(b, a):
                    if other is not kept:
                        await other.wait_closed()
            assert b.endpoint.connection_to(a.aura_id) is kept and b.paths.peers[a.aura_id].conn is kept
            assert a.paths.peers[b.aura_id].conn is conn
            conn.close()
            await kept.wait_closed()


async def test_closing_one_of_two_connections_leaves_the_other_in_use_with_its_paths(tmp_path: Path) -> None:
    async with (
        running(make_home(tmp_path, "r"), relay=True) as r,
        running(make_home(tmp_path, "b")) as b,
        running(make_home(tmp_path, "a")) as a,
    ):
        await session(b, r)
        link = await session(a, r)
        first = await a.endpoint.connect(b.aura_id, b.listen_addresses)
        # A second authenticated connection, as when both sides dial at once (the endpoint's
        # dial would reuse the first, so the handshake is started directly).
        second = await a.endpoint._handshake(b.aura_id, virtual_address(b.aura_id), link.path_to(b.aura_id))
        assert set(connections_between(a, b)) == {first, second}
        first_b, second_b = await counterpart(first, b), await counterpart(second, b)
        assert a.endpoint.connection_to(b.aura_id) is second
        second.close()
        assert a.endpoint.connection_to(b.aura_id) is first  # the survivor takes over at once
        assert a.paths.peers[b.aura_id].conn is first
        await second_b.wait_closed()
        assert b.endpoint.connection_to(a.aura_id) is first_b and b.paths.peers[a.aura_id].conn is first_b
        paths = a.paths.peers[b.aura_id]
        answered = paths.ctx.estimate(first.path, a.paths.now()).samples
        async with asyncio.timeout(5.0):  # the resumed paths probe again, and b answers
            while paths.ctx.estimate(first.path, a.paths.now()).samples == answered:
                await paths._decided.wait()
        b.serve(ECHO, echo)
        async with await a.open_stream(b.aura_id, ECHO) as stream:
            assert stream.connection is first
            assert await echo_through(stream, b"still here") == b"still here"


def test_offers_round_trip() -> None:
    relay = RelayAddress(Identity.from_seed(bytes(32)).aura_id, Address("10.1.0.2", 7700))
    offer = Offer(bytes(range(16)), [Address("127.0.0.1", 1), Address("::1", 2)], [relay])
    assert round_trip(CODEC, offer) == offer


@given(st.binary(max_size=600))
def test_any_bytes_decode_to_offers_or_raise_our_protocol_error(data: bytes) -> None:
    decode_or_protocol_error(CODEC, data)
