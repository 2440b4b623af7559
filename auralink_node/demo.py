"""The main job on embedded defaults, for the README's Quickstart.

Two identities are created, sign their node records and handle claims, publish them into an
in-memory :class:`~auralink.identity.book.RecordBook` (the same validation the DHT applies),
and resolve each other by handle. Then the demo tries the attacks that the records exist to
stop (a forged record, a tampered byte, a replay, a stolen handle) and shows each refused, and
it rotates a key and shows the handle follow the rotation.

Then two real nodes start in a temporary directory, on loopback: alice dials bob by AuraID over
QUIC (each checks the other's key), learns ``@bob.aura`` from identify, pings it by handle,
streams to bob's echo service, and is refused when she dials bob's address under another AuraID.

Last, two SDK meshes (embedded nodes) call each other by handle: alice calls ``@bob.aura``
with video, audio and data through aiortc; bob answers with his own video and audio; the demo
shows the setup time, the path, the frames that arrived and a data message's round trip. The
call needs the ``calls`` extra (``pip install -e '.[calls]'``) and a non-loopback address
(aioice never offers 127.0.0.1); without either the step is skipped and says why.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auralink.errors import AuralinkError, PeerIdentityMismatch
from auralink.identity import HandleClaim, Identity, KeyRotation, NodeRecord, RecordBook, decode_record
from auralink.wire.address import Address
from auralink_node.config import NodeConfig, save_config
from auralink_node.home import NodeHome
from auralink_node.node import Node
from auralink_node.transport import MeshStream

__all__ = ["DemoReport", "run_demo", "run_full_demo", "run_mesh_demo"]

_HOUR = 3600


@dataclass(slots=True)
class DemoStep:
    """One thing the demo did, and whether it came out as it should."""

    name: str
    """What was tried."""
    ok: bool
    """True if the outcome is the expected one (an attack refused counts as ok)."""
    detail: str
    """What happened."""


@dataclass(slots=True)
class DemoReport:
    """Everything the demo did."""

    identities: dict[str, str] = field(default_factory=dict)
    """Handle to AuraID."""
    steps: list[DemoStep] = field(default_factory=list)
    """In order."""

    @property
    def ok(self) -> bool:
        """True if every step came out as expected."""
        return all(step.ok for step in self.steps)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "ok": self.ok,
            "identities": self.identities,
            "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in self.steps],
        }

    def lines(self) -> list[str]:
        """The report for a terminal."""
        out = [f"{handle}  {aura_id}" for handle, aura_id in self.identities.items()]
        out += [f"[{'ok' if s.ok else 'FAIL'}] {s.name}: {s.detail}" for s in self.steps]
        out.append("demo passed" if self.ok else "demo FAILED")
        return out


def _refused(report: DemoReport, name: str, attempt: Callable[[], object]) -> None:
    try:
        attempt()
    except AuralinkError as exc:
        report.steps.append(DemoStep(name, True, f"refused: {type(exc).__name__}: {exc}"))
    else:
        report.steps.append(DemoStep(name, False, "was accepted, but must be refused"))


def run_demo(now: float) -> DemoReport:
    """Run the demo at wall-clock time ``now`` (Unix seconds)."""
    report = DemoReport()
    t = int(now)
    book = RecordBook()
    people = {"@alice.aura": Identity.generate(), "@bob.aura": Identity.generate()}
    for number, (handle, identity) in enumerate(people.items(), start=1):
        report.identities[handle] = str(identity.aura_id)
        record = NodeRecord.create(
            identity,
            seq=1,
            issued_at=t,
            expires_at=t + _HOUR,
            addresses=[Address("127.0.0.1", 7700 + number)],
            protocols=["auralink/ping/1"],
        )
        claim = HandleClaim.create(identity, handle, seq=1, issued_at=t, expires_at=t + _HOUR)
        book.put(record, now)
        book.put(claim, now)
        report.steps.append(
            DemoStep(
                f"publish {handle}",
                True,
                f"node record {len(record.encode())} B and handle claim {len(claim.encode())} B signed and stored",
            )
        )

    bob = people["@bob.aura"]
    found = book.resolve("@bob.aura", now)
    resolved = found is not None and found.aura_id == bob.aura_id
    if found is not None:
        found.verify(now, expected=bob.aura_id)
    report.steps.append(
        DemoStep(
            "alice resolves @bob.aura",
            resolved,
            f"-> {found.aura_id.short()} at {', '.join(map(str, found.addresses))}, signature verified"
            if found
            else "not found",
        )
    )

    mallory = Identity.generate()
    honest = book.node(bob.aura_id, now)
    assert honest is not None
    forged = NodeRecord(
        bob.aura_id,
        5,
        t,
        t + _HOUR,
        (Address("203.0.113.9", 6666),),
        (),
        (),
        mallory.sign(NodeRecord.DOMAIN, b"anything"),
    )
    _refused(report, "forged record for bob", lambda: book.put(forged, now))
    tampered = bytearray(honest.encode())
    tampered[40] ^= 0x01
    _refused(report, "record with one flipped bit", lambda: book.put(decode_record(bytes(tampered)), now))
    newer = NodeRecord.create(bob, seq=2, issued_at=t, expires_at=t + _HOUR, addresses=[Address("127.0.0.1", 7712)])
    book.put(newer, now)
    _refused(report, "replay of bob's older record", lambda: book.put(honest, now))
    stolen = HandleClaim.create(mallory, "@bob.aura", seq=9, issued_at=t, expires_at=t + _HOUR)
    _refused(report, "mallory claims @bob.aura", lambda: book.put(stolen, now))

    bob2 = Identity.generate()
    book.put(KeyRotation.create(bob, bob2, seq=1, issued_at=t), now)
    book.put(HandleClaim.create(bob2, "@bob.aura", seq=2, issued_at=t, expires_at=t + _HOUR), now)
    book.put(
        NodeRecord.create(bob2, seq=1, issued_at=t, expires_at=t + _HOUR, addresses=[Address("127.0.0.1", 7722)]), now
    )
    moved = book.resolve("@bob.aura", now)
    report.steps.append(
        DemoStep(
            "bob rotates his key; @bob.aura follows",
            moved is not None and moved.aura_id == bob2.aura_id,
            f"@bob.aura -> {moved.aura_id.short()} (rotation signed by old and new key)" if moved else "not found",
        )
    )
    return report


_ECHO = "demo/echo/1"


async def _echo(stream: MeshStream) -> None:
    while chunk := await stream.read():
        await stream.send(chunk)
    stream.write_eof()


async def run_mesh_demo(report: DemoReport, workdir: Path) -> None:
    """Two real nodes on loopback: QUIC with key-checked TLS, identify, handles, ping, a stream."""
    nodes = {}
    for name in ("alice", "bob"):
        home = NodeHome(workdir / name)
        home.keystore().create(Identity.generate())
        nodes[name] = Node(home, NodeConfig(handle=f"@{name}.aura", listen=("127.0.0.1:0",)), control_api=False)
    async with nodes["alice"] as alice, nodes["bob"] as bob:
        bob.serve(_ECHO, _echo)
        report.identities["@alice.aura (node)"] = str(alice.aura_id)
        report.identities["@bob.aura (node)"] = str(bob.aura_id)
        conn = await alice.dial(bob.aura_id, bob.listen_addresses)
        report.steps.append(
            DemoStep(
                "alice dials bob's AuraID over QUIC",
                conn.peer == bob.aura_id,
                f"mutual TLS with Ed25519 keys, bob proved {bob.aura_id.short()} at {conn.remote}",
            )
        )
        resolved = (await alice.resolve("@bob.aura")).aura_id
        report.steps.append(
            DemoStep(
                "alice resolves @bob.aura from identify",
                resolved == bob.aura_id,
                f"signed handle claim received on the connection -> {resolved.short()}",
            )
        )
        pinged = await alice.ping(resolved, count=5)
        report.steps.append(
            DemoStep(
                "alice pings @bob.aura",
                pinged.received == 5,
                f"{pinged.received}/5 answered, p50 {pinged.percentile_ms(50) or 0:.2f} ms",
            )
        )
        stream = await alice.open_stream(resolved, _ECHO)
        await stream.send(b"hello, bob")
        stream.write_eof()
        echoed = await stream.read_all(1024)
        report.steps.append(
            DemoStep(
                "alice streams to bob's echo service",
                echoed == b"hello, bob",
                f"sent and got back {echoed!r}",
            )
        )
        impostor = Identity.generate().aura_id
        try:
            await alice.connect(impostor, bob.listen_addresses)
        except PeerIdentityMismatch:
            report.steps.append(
                DemoStep(
                    "dialling bob's address as someone else",
                    True,
                    "refused: the key there is not the AuraID dialled",
                )
            )
        else:
            report.steps.append(DemoStep("dialling bob's address as someone else", False, "was accepted"))


CALL_SECONDS = 2.0
"""How long the demo call stays up."""


async def run_call_demo(report: DemoReport, workdir: Path) -> None:
    """Alice calls ``@bob.aura`` with video, audio and data; bob answers with his own media."""
    name = "alice calls @bob.aura with video, audio and data"
    try:
        import aiortc  # noqa: F401, PLC0415
        from aioice.ice import get_host_addresses  # noqa: PLC0415
    except ImportError:  # an optional extra: the demo says so and goes on
        report.steps.append(DemoStep(name, True, "skipped: calls need aiortc: pip install -e '.[calls]'"))
        return
    if not get_host_addresses(use_ipv4=True, use_ipv6=True):
        detail = "skipped: this host has only loopback, and ICE (aioice) never offers 127.0.0.1 as a candidate"
        report.steps.append(DemoStep(name, True, detail))
        return
    import auralink  # noqa: PLC0415
    from auralink.calls.media import stamped_video, tone  # noqa: PLC0415

    for person in ("alice", "bob"):
        home = NodeHome(workdir / f"{person}-app")
        home.root.mkdir(parents=True)
        home.keystore().create(Identity.generate())
        save_config(home.config_path, NodeConfig(handle=f"@{person}.aura"))
    async with (
        auralink.connect(workdir / "alice-app", backend="embedded", listen=["127.0.0.1:0"]) as alice,
        auralink.connect(workdir / "bob-app", backend="embedded", listen=["127.0.0.1:0"]) as bob,
    ):
        await alice.dial(bob.identity.aura_id, [str(a) for a in (await bob.status())["listen"]])

        async def answer() -> None:
            async for invite in bob.incoming_calls():
                call = await invite.accept(video=stamped_video(), audio=tone(660))
                call.send(await call.receive())  # echo one data message
                return

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(answer())
            try:
                async with asyncio.timeout(15):
                    call = await alice.call("@bob.aura", video=stamped_video(), audio=tone(), data=True)
                    call.send("hello over the data channel")
                    echoed = await call.receive()
                    await asyncio.sleep(CALL_SECONDS)  # let media flow for the demo
                    stats = await call.stats()
                    await call.hangup()
            except (AuralinkError, TimeoutError) as exc:
                report.steps.append(DemoStep(name, False, f"{type(exc).__name__}: {exc}"))
                return
    path = stats.path
    frames = stats.frames
    report.steps.append(
        DemoStep(
            name,
            frames.get("video", 0) > 0 and frames.get("audio", 0) > 0 and echoed == "hello over the data channel",
            f"connected in {(stats.setup or 0) * 1000:.0f} ms via {path.kind if path else '?'} path "
            f"{path.local if path else ''}; first frame after {(stats.first_frame or 0) * 1000:.0f} ms; "
            f"{frames.get('video', 0)} video and {frames.get('audio', 0)} audio frames from bob in "
            f"{CALL_SECONDS:g} s; data message echoed",
        )
    )


def run_full_demo(now: float) -> DemoReport:
    """The record demo, the two-node mesh demo, then a call, in a temporary directory."""
    report = run_demo(now)
    with tempfile.TemporaryDirectory(prefix="auralink-demo-") as workdir:
        asyncio.run(run_mesh_demo(report, Path(workdir)))
        asyncio.run(run_call_demo(report, Path(workdir)))
    return report
