"""Discovery's pure parts: targets, the negative cache, and resolutions as the API prints them."""

from __future__ import annotations

import pytest

from auralink.errors import IdentityError, RemoteProtocolError
from auralink.identity import Identity, NodeRecord
from auralink.mesh import Resolution
from auralink.wire import Address
from auralink_node.discovery import NegativeCache, parse_target

ALICE = Identity.from_seed(bytes(31) + b"\x01")
T0 = 1_700_000_000


def test_targets_are_aura_ids_or_canonical_handles() -> None:
    assert parse_target(str(ALICE.aura_id)) == ALICE.aura_id
    assert parse_target(ALICE.aura_id) == ALICE.aura_id
    assert parse_target(" @Bob.aura ") == "@bob.aura"
    assert parse_target("c.aura") == "@c.aura"
    with pytest.raises(IdentityError):
        parse_target("not-an-id")
    with pytest.raises(IdentityError):
        parse_target("@bad_name.aura")


def test_negative_cache_forgets_after_ttl_and_on_clear() -> None:
    cache = NegativeCache(30.0, max_entries=2)
    cache.fail("@x.aura", 100.0, "cannot resolve @x.aura")
    assert cache.check("@x.aura", 110.0) == (20.0, "cannot resolve @x.aura")
    assert cache.check("@x.aura", 130.0) is None  # expired, and dropped
    assert len(cache) == 0
    for name in ("@a.aura", "@b.aura", "@c.aura"):
        cache.fail(name, 100.0, "no")
    assert len(cache) == 2 and cache.check("@a.aura", 100.0) is None  # the oldest went first
    cache.clear("@b.aura")
    assert cache.check("@b.aura", 100.0) is None and cache.check("@c.aura", 100.0) is not None
    cache.clear()
    assert len(cache) == 0


def test_resolution_round_trips_through_its_dict() -> None:
    record = NodeRecord.create(
        ALICE, seq=7, issued_at=T0, expires_at=T0 + 3600, addresses=[Address("127.0.0.1", 7700)], protocols=[]
    )
    resolution = Resolution(ALICE.aura_id, "@alice.aura", record.addresses, "dht", record)
    body = resolution.as_dict()
    assert body["source"] == "dht" and body["seq"] == 7 and body["addresses"] == ["127.0.0.1:7700"]
    assert Resolution.from_dict(body) == resolution


@pytest.mark.parametrize(
    "change",
    [{"source": "carrier-pigeon"}, {"aura_id": "nope"}, {"addresses": ["no port"]}, {"record": "zz"}, {"source": None}],
)
def test_a_malformed_resolution_from_the_daemon_is_a_protocol_error(change: dict[str, object]) -> None:
    body = Resolution(ALICE.aura_id, None, (), "cache", None).as_dict()
    body.update(change)
    with pytest.raises(RemoteProtocolError):
        Resolution.from_dict(body)
