"""The answer to "where is @bob.aura?": :class:`Resolution`, shared by the node and the SDK."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from auralink.errors import AuralinkError, RemoteProtocolError
from auralink.identity import AuraID, NodeRecord, decode_record
from auralink.wire import Address

__all__ = ["RESOLVE_SOURCES", "Resolution", "ResolveSource"]

ResolveSource = Literal["cache", "dht", "mdns"]
"""Where a resolution came from: records the node already held, the DHT, or the LAN."""

RESOLVE_SOURCES: tuple[str, ...] = get_args(ResolveSource)
"""Every :data:`ResolveSource`."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where a peer is: its AuraID, handle and addresses, and how we know."""

    aura_id: AuraID
    """The peer's current key."""
    handle: str | None
    """Its handle, if a valid claim for it is known."""
    addresses: tuple[Address, ...]
    """Addresses to dial, from its signed record first."""
    source: ResolveSource
    """Where the answer came from."""
    record: NodeRecord | None
    """The peer's signed node record, if one is known."""
    pinned: AuraID | None = None
    """The key the handle was pinned to on first use, when it differs from :attr:`aura_id`."""
    warning: str | None = None
    """Something the user must hear about, such as a handle that changed keys."""

    def as_dict(self) -> dict[str, Any]:
        """The resolution as the CLI and the control API print it."""
        return {
            "aura_id": str(self.aura_id),
            "handle": self.handle,
            "addresses": [str(a) for a in self.addresses],
            "source": self.source,
            "seq": self.record.seq if self.record else None,
            "expires_at": self.record.expires_at if self.record else None,
            "record": self.record.encode().hex() if self.record else None,
            "pinned": str(self.pinned) if self.pinned else None,
            "warning": self.warning,
        }

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Resolution:
        """Parse :meth:`as_dict` output (from the daemon); raises :class:`RemoteProtocolError`."""
        try:
            source = body["source"]
            if source not in RESOLVE_SOURCES:
                raise RemoteProtocolError(f"unknown resolution source {source!r}")
            record = None
            if body.get("record"):
                decoded = decode_record(bytes.fromhex(body["record"]))
                if not isinstance(decoded, NodeRecord):
                    raise RemoteProtocolError("the resolution's record is not a node record")
                record = decoded
            return cls(
                AuraID.parse(body["aura_id"]),
                body.get("handle"),
                tuple(Address.parse(a) for a in body["addresses"]),
                source,
                record,
                AuraID.parse(body["pinned"]) if body.get("pinned") else None,
                body.get("warning"),
            )
        except (KeyError, TypeError, ValueError, AuralinkError) as exc:
            if isinstance(exc, RemoteProtocolError):
                raise
            raise RemoteProtocolError(f"malformed resolution from the daemon: {exc}") from exc
