"""Path management on loopback: a relayed connection finds the direct path, then falls back when it dies."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from auralink.identity import Identity, RelayAddress
from auralink.wire import Address
from auralink_node.paths import CODEC, Offer
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


def test_offers_round_trip() -> None:
    relay = RelayAddress(Identity.from_seed(bytes(32)).aura_id, Address("10.1.0.2", 7700))
    offer = Offer(bytes(range(16)), [Address("127.0.0.1", 1), Address("::1", 2)], [relay])
    assert round_trip(CODEC, offer) == offer


@given(st.binary(max_size=600))
def test_any_bytes_decode_to_offers_or_raise_our_protocol_error(data: bytes) -> None:
    decode_or_protocol_error(CODEC, data)
