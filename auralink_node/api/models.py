"""Request and response models of the control API; the OpenAPI schema is generated from them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from auralink.errors import AuralinkError
from auralink.identity import AuraID, parse_handle
from auralink.wire import Address

__all__ = [
    "ConnectRequest",
    "DhtPublishModel",
    "DhtStatusResponse",
    "JoinRequest",
    "JoinResponse",
    "MdnsStatusModel",
    "ConnectResponse",
    "Health",
    "PathModel",
    "PeerModel",
    "PeersResponse",
    "PinResponse",
    "PingRequest",
    "PingResponse",
    "RecordModel",
    "RelayLinkModel",
    "ReputationModel",
    "RecordsResponse",
    "ResolveResponse",
    "RttModel",
    "StatusResponse",
    "WhyResponse",
]


def _aura_id(value: str) -> str:
    try:
        return str(AuraID.parse(value))
    except AuralinkError as exc:
        raise ValueError(str(exc)) from exc


def _addresses(values: list[str]) -> list[str]:
    out = []
    for value in values:
        try:
            out.append(str(Address.parse(value)))
        except AuralinkError as exc:
            raise ValueError(str(exc)) from exc
    return out


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(_Model):
    """Liveness."""

    status: str
    aura_id: str


class ReputationModel(_Model):
    """A peer's or relay's standing in the reputation book."""

    role: str
    aura_id: str
    score: float = Field(description="0 to 1; 0.5 for a stranger")
    positive: float
    negative: float
    strikes: float
    banned: bool
    banned_until: float | None
    ban_reason: str | None
    bans: int


class RelayLinkModel(_Model):
    """Our session on one relay."""

    relay: str = Field(description="AURAID@HOST:PORT")
    home: bool = Field(description="a home relay from the config (listed in our record when ready)")
    ready: bool
    score: float = Field(description="the relay's reputation, 0 to 1 (0.5 for a stranger)")


class StatusResponse(_Model):
    """What ``auralink-node status`` shows."""

    aura_id: str
    handle: str | None
    listen: list[str]
    addresses: list[str]
    observed: list[str]
    peers: int
    protocols: list[str]
    version: str
    uptime_s: float
    record_seq: int
    relays: list[RelayLinkModel]
    relay_service: dict[str, int] | None = Field(description="our relay's packet counts by outcome, if we relay")
    turn: str | None = Field(default=None, description="our TURN server's URL, if we relay and serve TURN")


class PathModel(_Model):
    """Measurements of one path to a peer."""

    path: str
    rtt_ms: float | None
    samples: int


class PeerModel(_Model):
    """A peer the node knows."""

    aura_id: str
    handle: str | None
    connected: bool
    address: str | None
    rtt_ms: float | None
    path: str | None = Field(description="direct:HOST:PORT or relay:AURAID, while connected")
    reputation: ReputationModel
    addresses: list[str]
    paths: list[PathModel]
    first_seen: float
    last_seen: float
    connects: int
    failures: int


class PeersResponse(_Model):
    """Every peer the node knows, connected ones first."""

    peers: list[PeerModel]


class ConnectRequest(_Model):
    """Connect to a peer by AuraID, optionally at given addresses."""

    aura_id: str
    addresses: list[str] = Field(default_factory=list, max_length=16)

    _check_id = field_validator("aura_id")(_aura_id)
    _check_addresses = field_validator("addresses")(_addresses)


class ConnectResponse(_Model):
    """The authenticated connection."""

    aura_id: str
    address: str
    alpn: str | None
    rtt_ms: float | None


class PingRequest(_Model):
    """Ping a peer."""

    target: str
    addresses: list[str] = Field(default_factory=list, max_length=16)
    count: int = Field(default=1, ge=1, le=10_000)

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        if value.startswith("@"):
            try:
                return parse_handle(value)
            except AuralinkError as exc:
                raise ValueError(str(exc)) from exc
        return _aura_id(value)

    _check_addresses = field_validator("addresses")(_addresses)


class RttModel(_Model):
    """Round-trip times in milliseconds."""

    p50: float | None
    p99: float | None
    min: float | None
    max: float | None
    mean: float | None


class PingResponse(_Model):
    """The outcome of a ping run."""

    target: str
    address: str
    sent: int
    received: int
    rtt_ms: RttModel


class ResolveResponse(_Model):
    """Who an AuraID or handle is, and where to reach it."""

    aura_id: str
    handle: str | None
    addresses: list[str]
    source: str = Field(description="where the answer came from: cache (records held here), dht or mdns")
    seq: int | None = Field(description="sequence number of the peer's node record, if known")
    expires_at: int | None = Field(description="when that record expires (Unix seconds)")
    record: str | None = Field(description="the signed node record, hex")
    pinned: str | None = Field(description="the key the handle was pinned to, when it now resolves elsewhere")
    warning: str | None = Field(description="something the user must hear about, e.g. a handle that changed keys")


class GrantRequest(_Model):
    """A room grant for the node's identity to sign (it owns the room)."""

    room: str = Field(min_length=1, max_length=64, description="the room's name; its owner is this node")
    subject: str = Field(description="AuraID of the participant the grant is for")
    capabilities: int = Field(ge=1, le=31, description="join 1, publish 2, subscribe 4, publish_data 8, admin 16")
    not_before: int = Field(ge=0, description="Unix seconds from which the grant is valid")
    expires_at: int = Field(ge=1, description="Unix seconds at which it expires (at most 30 days later)")


class GrantResponse(_Model):
    """A signed room grant."""

    grant: str = Field(description="the encoded grant, hex")


class JoinRequest(_Model):
    """Nodes to join the DHT through."""

    addresses: list[str] = Field(min_length=1, max_length=16)

    _check = field_validator("addresses")(_addresses)


class JoinResponse(_Model):
    """The routing table after joining."""

    joined: list[str] = Field(description="the addresses that answered")
    contacts: int = Field(description="contacts in the routing table after joining")


class WhyResponse(_Model):
    """Why a connection takes the path it takes (see ``auralink_node.routing``)."""

    peer: str
    path: str = Field(description="direct:HOST:PORT or relay:AURAID")
    relayed: bool
    decision: dict[str, Any] = Field(description="the selector's last decision: candidates, scores, reason")
    history: list[dict[str, Any]] = Field(description="the switches of this connection, oldest first")


class PinResponse(_Model):
    """The outcome of forgetting a handle's pin."""

    handle: str
    forgotten: bool = Field(description="whether the handle had a pin")


class DhtPublishModel(_Model):
    """The last time our records were published."""

    at: float | None
    seq: int | None
    accepted: int | None = Field(description="fewest peers that accepted one of our records")
    error: str | None


class MdnsStatusModel(_Model):
    """LAN discovery."""

    enabled: bool
    peers: int


class DhtStatusResponse(_Model):
    """The DHT as this node sees it."""

    node_id: str
    contacts: int
    buckets: int
    stored_records: int
    bootstrap: list[str]
    joined: list[str]
    last_publish: DhtPublishModel
    last_refresh: float | None
    misbehaving_peers: int
    rejections: dict[str, int]
    negative_cache: int
    mdns: MdnsStatusModel


class RecordModel(_Model):
    """A verified node record."""

    aura_id: str
    seq: int
    issued_at: int
    expires_at: int
    addresses: list[str]
    relays: list[str]
    protocols: list[str]
    encoded: str = Field(description="the signed record, hex")


class RecordsResponse(_Model):
    """Our own record and every valid record the node holds."""

    own: RecordModel
    known: list[RecordModel]
