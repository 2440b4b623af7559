"""The keystore: a 0600 file, optionally sealed, written atomically, loudly refusing bad states."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from auralink.errors import (
    KeystoreCorrupt,
    KeystoreError,
    KeystoreExists,
    KeystorePermissionError,
    WrongPassphrase,
)
from auralink.identity import Identity, KdfLimits, Keystore, follow_rotations
from tests.strategies import IDENTITIES

ALICE, BOB = IDENTITIES[:2]
FAST = KdfLimits.fastest()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "key"


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_plain_key_round_trips_with_mode_0600(path: Path) -> None:
    store = Keystore(path)
    store.create(ALICE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.load().aura_id == ALICE.aura_id
    assert store.aura_id() == ALICE.aura_id
    assert not store.is_sealed()
    assert os.listdir(path.parent) == ["key"]  # no temporary files left behind


def test_sealed_key_needs_its_passphrase(path: Path) -> None:
    store = Keystore(path, kdf=FAST)
    store.create(ALICE, passphrase=b"correct horse")
    assert store.is_sealed()
    assert ALICE.seed.hex() not in path.read_text()
    assert store.aura_id() == ALICE.aura_id  # public part readable without the passphrase
    assert store.load(b"correct horse").aura_id == ALICE.aura_id
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        store.load(b"battery staple")
    with pytest.raises(WrongPassphrase, match="sealed"):
        store.load()


def test_existing_identity_is_never_overwritten_without_force(path: Path) -> None:
    store = Keystore(path)
    store.create(ALICE)
    before = path.read_bytes()
    with pytest.raises(KeystoreExists, match="--force"):
        store.create(BOB)
    assert path.read_bytes() == before
    store.create(BOB, force=True)
    assert store.load().aura_id == BOB.aura_id


def test_key_readable_by_others_is_refused_with_the_fix(path: Path) -> None:
    Keystore(path).create(ALICE)
    path.chmod(0o644)
    with pytest.raises(KeystorePermissionError, match="chmod 600"):
        Keystore(path).load()


def test_missing_key_says_how_to_create_one(path: Path) -> None:
    with pytest.raises(KeystoreError, match="auralink-node init"):
        Keystore(path).load()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: b"",
        lambda d: b"{not json",
        lambda d: b"\xff\xfe",
        lambda d: json.dumps({**d, "format": "other"}).encode(),
        lambda d: json.dumps({**d, "version": 99}).encode(),
        lambda d: json.dumps({**d, "aura_id": "x" * 56}).encode(),
        lambda d: json.dumps({**d, "aura_id": str(BOB.aura_id)}).encode(),  # seed no longer matches
        lambda d: json.dumps({**d, "secret": {"seed": "!!!"}}).encode(),
        lambda d: json.dumps({**d, "secret": {"seed": "AAAA"}}).encode(),
        lambda d: json.dumps({**d, "secret": None}).encode(),
        lambda d: json.dumps({**d, "rotations": ["AAAA"]}).encode(),
        lambda d: json.dumps({**d, "rotations": 5}).encode(),
        lambda d: json.dumps([1, 2]).encode(),
    ],
)
def test_corrupt_key_file_is_refused_with_a_clear_error(path: Path, mutate: object) -> None:
    Keystore(path).create(ALICE)
    document = json.loads(path.read_text())
    path.write_bytes(mutate(document))  # type: ignore[operator]
    with pytest.raises(KeystoreCorrupt, match="corrupt"):
        store = Keystore(path)
        store.load()
        store.rotations()


def test_sealed_file_with_absurd_kdf_limits_is_refused(path: Path) -> None:
    Keystore(path, kdf=FAST).create(ALICE, passphrase=b"pw")
    document = json.loads(path.read_text())
    document["secret"]["memlimit"] = 1 << 40
    path.write_text(json.dumps(document))
    with pytest.raises(KeystoreCorrupt, match="out of range"):
        Keystore(path).load(b"pw")


def test_rotation_replaces_the_key_and_keeps_a_verifiable_chain(path: Path) -> None:
    store = Keystore(path, kdf=FAST)
    store.create(ALICE, passphrase=b"pw")
    second, first_rotation = store.rotate(now=1_700_000_000, passphrase=b"pw")
    third, _ = store.rotate(now=1_700_000_100, passphrase=b"pw")
    assert store.is_sealed()
    assert store.load(b"pw").aura_id == third.aura_id
    rotations = store.rotations()
    assert [r.seq for r in rotations] == [1, 2]
    assert first_rotation.old == ALICE.aura_id and first_rotation.new == second.aura_id
    assert follow_rotations(ALICE.aura_id, rotations, 1_700_000_200) == third.aura_id


def test_rotation_with_a_wrong_passphrase_changes_nothing(path: Path) -> None:
    store = Keystore(path, kdf=FAST)
    store.create(ALICE, passphrase=b"pw")
    before = snapshot(path.parent)
    with pytest.raises(WrongPassphrase):
        store.rotate(now=1_700_000_000, passphrase=b"nope")
    assert snapshot(path.parent) == before


def test_failed_write_leaves_the_old_key_intact(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Keystore(path)
    store.create(ALICE)
    before = snapshot(path.parent)

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="No space"):
        store.create(Identity.generate(), force=True)
    assert snapshot(path.parent) == before


def test_rotation_never_seals_a_plain_key_implicitly(path: Path) -> None:
    store = Keystore(path, kdf=FAST)
    store.create(ALICE)
    before = snapshot(path.parent)
    with pytest.raises(KeystoreError, match="not sealed"):
        store.rotate(now=1_700_000_000, passphrase=b"pw")
    assert snapshot(path.parent) == before
