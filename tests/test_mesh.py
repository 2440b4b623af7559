"""The SDK's Mesh API: the same scenarios against an embedded node and a daemon-backed mesh."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import auralink
from auralink.errors import PeerIdentityMismatch, ProtocolNotSupported, ResolveFailed
from auralink.identity import Identity, Keystore
from auralink.mesh import Mesh, Stream
from tests.daemons import Daemon, cli

UPPER = "test/upper/1"
ECHO = "test/echo/1"


async def echo(stream: Stream) -> None:
    while chunk := await stream.read():
        await stream.send(chunk)
    stream.write_eof()


async def upper(stream: Stream) -> None:
    data = await stream.read_all(1 << 20)
    await stream.send(data.upper() + b" from " + str(stream.peer).encode()[:10])
    stream.write_eof()


@pytest.fixture(params=["embedded", "daemon"])
def home_a(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "a"
    assert cli(home, "init").returncode == 0
    if request.param == "embedded":
        yield home
        return
    daemon = Daemon(home)
    try:
        yield home
    finally:
        daemon.kill()


@pytest.fixture
async def mesh_a(home_a: Path) -> AsyncIterator[Mesh]:
    async with auralink.connect(home_a, listen=["127.0.0.1:0"]) as mesh:
        yield mesh


@pytest.fixture
async def mesh_b(tmp_path: Path) -> AsyncIterator[Mesh]:
    home = tmp_path / "b"
    assert cli(home, "init", "--handle", "bob").returncode == 0
    async with auralink.connect(home, backend="embedded", listen=["127.0.0.1:0"]) as mesh:
        await mesh.serve(ECHO, echo)
        yield mesh


async def address_of(mesh: Mesh) -> str:
    return str((await mesh.status())["listen"][0])


async def test_identity_is_the_homes_key(mesh_a: Mesh, home_a: Path) -> None:
    assert mesh_a.identity.aura_id == Keystore(home_a / "key").aura_id()


async def test_dial_and_echo_a_stream(mesh_a: Mesh, mesh_b: Mesh) -> None:
    b = mesh_b.identity.aura_id
    peer = await mesh_a.dial(b, [await address_of(mesh_b)])
    assert peer.aura_id == b
    stream = await mesh_a.open_stream(b, ECHO)
    assert stream.peer == b
    await stream.send(b"hello mesh")
    assert await stream.readexactly(10) == b"hello mesh"
    stream.write_eof()
    assert await stream.read() == b""


async def test_incoming_streams_reach_the_apps_handler(mesh_a: Mesh, mesh_b: Mesh) -> None:
    await mesh_a.serve(UPPER, upper)
    stream = await mesh_b.open_stream(mesh_a.identity.aura_id, UPPER, [await address_of(mesh_a)])
    await stream.send(b"shout")
    stream.write_eof()
    reply = await stream.read_all(1024)
    assert reply == b"SHOUT from " + str(mesh_b.identity.aura_id).encode()[:10]


async def test_unknown_protocol_is_refused_the_same_way(mesh_a: Mesh, mesh_b: Mesh) -> None:
    stream = await mesh_a.open_stream(mesh_b.identity.aura_id, "test/nobody/1", [await address_of(mesh_b)])
    with pytest.raises(ProtocolNotSupported) as info:
        await stream.read()
    assert info.value.protocol == "test/nobody/1"


async def test_wrong_key_is_refused_the_same_way(mesh_a: Mesh, mesh_b: Mesh) -> None:
    stranger = Identity.generate().aura_id
    with pytest.raises(PeerIdentityMismatch) as info:
        await mesh_a.dial(stranger, [await address_of(mesh_b)])
    assert (info.value.expected, info.value.actual) == (str(stranger), str(mesh_b.identity.aura_id))


async def test_ping(mesh_a: Mesh, mesh_b: Mesh) -> None:
    result = await mesh_a.ping(mesh_b.identity.aura_id, [await address_of(mesh_b)], count=5)
    assert result["received"] == 5 and result["rtt_ms"]["p50"] > 0


async def test_a_connected_peer_resolves_by_handle(mesh_a: Mesh, mesh_b: Mesh) -> None:
    with pytest.raises(ResolveFailed):
        await mesh_a.resolve("@bob.aura")
    await mesh_a.dial(mesh_b.identity.aura_id, [await address_of(mesh_b)])
    resolution = await mesh_a.resolve("@bob.aura")
    assert resolution.aura_id == mesh_b.identity.aura_id
    assert resolution.handle == "@bob.aura"
    assert resolution.source == "cache"  # learned over identify, so the earlier miss is forgotten
    assert resolution.addresses and resolution.record is not None
    result = await mesh_a.ping("@bob.aura", count=2)
    assert result["received"] == 2
    stream = await mesh_a.open_stream("@bob", ECHO)
    await stream.send(b"by name")
    assert await stream.readexactly(7) == b"by name"
