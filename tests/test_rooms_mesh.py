"""Rooms through the Mesh API: create_room, grant (signed by an embedded node or by the daemon) and join_room."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("aiortc")

import auralink
from auralink.calls.grants import Capability, RoomId, verify
from auralink.calls.media import read_stamp, stamped_video, tone
from auralink.errors import ConfigError, NotPermitted
from auralink.mesh import Mesh
from tests.calls_kit import embedded, needs_candidates
from tests.daemons import Daemon, cli

pytestmark = needs_candidates


@pytest.fixture
async def trio(tmp_path: Path) -> AsyncIterator[tuple[Mesh, Mesh, Mesh]]:
    async with contextlib.AsyncExitStack() as stack:
        meshes = [await stack.enter_async_context(embedded(tmp_path, name)) for name in ("alice", "bob", "carol")]
        for mesh in meshes[1:]:
            await mesh.dial(meshes[0].identity.aura_id, [str((await meshes[0].status())["listen"][0])])
        yield meshes[0], meshes[1], meshes[2]


async def test_a_mesh_creates_hosts_and_grants_a_room_that_others_join(trio: tuple[Mesh, Mesh, Mesh]) -> None:
    alice, bob, carol = trio
    room = await alice.create_room("standup")
    assert room == RoomId(alice.identity.aura_id, "standup")
    speaker = await alice.grant(room, bob.identity.aura_id)
    listener = await alice.grant("standup", "@carol.aura", Capability.JOIN | Capability.SUBSCRIBE, ttl=60)
    assert verify(listener, room, time.time(), subject=carol.identity.aura_id) is listener
    with pytest.raises(ConfigError):
        await bob.grant(room, carol.identity.aura_id)  # only the owner signs
    async with bob.join_room(alice.identity.aura_id, speaker) as b:
        await b.publish(stamped_video(fps=15))
        async with carol.join_room(alice.identity.aura_id, listener) as c:
            with pytest.raises(NotPermitted):
                await c.publish(stamped_video())  # carol's grant has no publish
            stamps = []
            subscription = await c.subscribe(bob.identity.aura_id)
            async with asyncio.timeout(15):
                async for frame in subscription:
                    if (stamp := read_stamp(frame)) is not None:
                        stamps.append(stamp.sequence)
                    if len(stamps) >= 5:
                        break
            assert stamps == sorted(stamps)


async def test_the_daemon_signs_grants_for_its_identity(tmp_path: Path) -> None:
    assert cli(tmp_path / "owner", "init", "--handle", "owner").returncode == 0
    daemon = Daemon(tmp_path / "owner")
    try:
        async with auralink.connect(tmp_path / "owner", backend="daemon") as owner:
            subject = auralink.Identity.generate().aura_id
            grant = await owner.grant("townhall", subject, Capability.participant() | Capability.ADMIN, ttl=120)
            room = RoomId(owner.identity.aura_id, "townhall")
            assert verify(grant, room, time.time(), subject=subject).capabilities & Capability.ADMIN
            assert grant.expires_at - grant.not_before == 120
    finally:
        daemon.stop()


async def test_a_daemon_backed_mesh_joins_a_room_and_receives_video_and_audio(tmp_path: Path) -> None:
    """Dave's mesh is a client of ``auralink-node up`` (control socket): his room stream and grant go through it."""
    assert cli(tmp_path / "dave", "init", "--handle", "dave").returncode == 0
    daemon = Daemon(tmp_path / "dave")
    try:
        async with (
            embedded(tmp_path, "alice") as alice,
            embedded(tmp_path, "bob") as bob,
            auralink.connect(tmp_path / "dave", backend="daemon") as dave,
        ):
            address = str((await alice.status())["listen"][0])
            for mesh in (bob, dave):
                await mesh.dial(alice.identity.aura_id, [address])
            room = await alice.create_room("townhall")
            async with (
                bob.join_room(alice.identity.aura_id, await alice.grant(room, bob.identity.aura_id)) as b,
                dave.join_room(alice.identity.aura_id, await alice.grant(room, dave.identity.aura_id)) as d,
            ):
                await b.publish(stamped_video(fps=15))
                await b.publish(tone(440.0))
                video = await d.subscribe(bob.identity.aura_id)
                audio = await d.subscribe(bob.identity.aura_id, kind="audio")
                stamps: list[int] = []
                async with asyncio.timeout(20):
                    async for frame in video:
                        if (stamp := read_stamp(frame)) is not None:
                            stamps.append(stamp.sequence)
                        if len(stamps) >= 5:
                            break
                    async for _ in audio:
                        if audio.frames_received >= 10:
                            break
                assert stamps == sorted(stamps) and len(set(stamps)) == 5
                assert audio.frames_received >= 10
                assert set(d.participants) == {bob.identity.aura_id}
    finally:
        assert daemon.stop() == 0
