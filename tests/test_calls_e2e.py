"""1:1 data calls between two embedded meshes on this host: signaling over the mesh, a data channel over aiortc."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("aiortc")

from auralink.calls import CallAgent, CallState, HangupReason, SignalingTimeouts
from auralink.errors import CallDeclined, CallFailed, CallStateError
from auralink.mesh import Mesh
from tests.calls_kit import alice, bob, call_threads, needs_candidates, settled

pytestmark = needs_candidates
__all__ = ["alice", "bob"]  # fixtures


async def test_a_data_call_rings_connects_carries_messages_and_hangs_up(alice: Mesh, bob: Mesh) -> None:
    tasks_before = set(asyncio.all_tasks())
    threads_before = call_threads()
    async with CallAgent(alice) as a, CallAgent(bob) as b:
        placing = asyncio.create_task(a.call(bob.identity.aura_id))
        invite = await asyncio.wait_for(b.next_invite(), 10)
        assert invite.peer == alice.identity.aura_id  # who calls is the mesh connection's proven identity
        callee = await asyncio.wait_for(invite.accept(), 10)
        caller = await asyncio.wait_for(placing, 10)
        assert caller.call_id == callee.call_id
        assert caller.state is callee.state is CallState.CONNECTED
        caller.send(b"ping")
        assert await asyncio.wait_for(callee.receive(), 5) == b"ping"
        callee.send("pong")
        assert await asyncio.wait_for(caller.receive(), 5) == "pong"
        await caller.hangup()
        ended = await asyncio.wait_for(callee.wait_ended(), 5)
        assert (ended.reason, ended.by_peer, ended.connected) == (HangupReason.NORMAL, True, True)
        with pytest.raises(CallFailed):
            await callee.receive()
        with pytest.raises(CallStateError):
            caller.send(b"after the end")
    leftover, threads = await settled(tasks_before, threads_before)
    assert not leftover, leftover
    assert not threads, threads


async def test_a_declined_call_raises_call_declined_at_the_caller(alice: Mesh, bob: Mesh) -> None:
    async with CallAgent(alice) as a, CallAgent(bob) as b:
        placing = asyncio.create_task(a.call(bob.identity.aura_id))
        invite = await asyncio.wait_for(b.next_invite(), 10)
        await invite.decline(HangupReason.BUSY)
        with pytest.raises(CallDeclined) as info:
            await asyncio.wait_for(placing, 10)
        assert (info.value.reason, info.value.by_peer) == ("BUSY", True)


async def test_an_unanswered_call_fails_with_no_answer(alice: Mesh, bob: Mesh) -> None:
    short = SignalingTimeouts(answer=0.5, ring=5.0, connect=5.0)
    async with CallAgent(alice, timeouts=short) as a, CallAgent(bob) as b:
        with pytest.raises(CallFailed) as info:
            await asyncio.wait_for(a.call(bob.identity.aura_id), 10)
        assert (info.value.reason, info.value.by_peer) == ("NO_ANSWER", False)
        invite = await asyncio.wait_for(b.next_invite(), 5)
        ended = await asyncio.wait_for(invite.call.wait_ended(), 5)  # the callee stops ringing too
        assert (ended.reason, ended.by_peer) == (HangupReason.NO_ANSWER, True)


async def test_glare_both_sides_calling_at_once_yields_one_call(alice: Mesh, bob: Mesh) -> None:
    async with CallAgent(alice) as a, CallAgent(bob) as b:
        from_alice, from_bob = await asyncio.wait_for(
            asyncio.gather(a.call(bob.identity.aura_id), b.call(alice.identity.aura_id)), 15
        )
        assert from_alice.call_id == from_bob.call_id
        winner = alice if alice.identity.aura_id.public_key > bob.identity.aura_id.public_key else bob
        kept = from_alice if winner is alice else from_bob
        assert kept.signaling.role is not None and kept.signaling.role.value == "caller"
        from_alice.send(b"one call")
        assert await asyncio.wait_for(from_bob.receive(), 5) == b"one call"
        await from_bob.hangup()
        await asyncio.wait_for(from_alice.wait_ended(), 5)
        assert b._invites.empty() and a._invites.empty()  # glare never rang anyone's app


async def test_mesh_call_and_incoming_calls_by_handle(alice: Mesh, bob: Mesh) -> None:
    async def answer() -> bytes:
        async for invite in bob.incoming_calls():
            call = await invite.accept()
            return bytes(await call.receive())
        raise AssertionError("no invite")

    answering = asyncio.create_task(answer())
    call = await asyncio.wait_for(alice.call("@bob.aura"), 10)  # resolved through the record bob sent
    call.send(b"hello by handle")
    assert await asyncio.wait_for(answering, 10) == b"hello by handle"
    await call.hangup()
