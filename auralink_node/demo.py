"""The main job on embedded defaults, for the README's Quickstart.

Two identities are created, sign their node records and handle claims, publish them into an
in-memory :class:`~auralink.identity.book.RecordBook` (the same validation the DHT applies),
and resolve each other by handle. Then the demo tries the attacks that the records exist to
stop (a forged record, a tampered byte, a replay, a stolen handle) and shows each refused, and
it rotates a key and shows the handle follow the rotation. Later layers grow this into a real
mesh and a call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from auralink.errors import AuralinkError
from auralink.identity import HandleClaim, Identity, KeyRotation, NodeRecord, RecordBook, decode_record
from auralink.wire.address import Address

__all__ = ["DemoReport", "run_demo"]

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
