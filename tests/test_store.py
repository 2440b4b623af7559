"""The node database: migrations, refusals, WAL durability across kill -9, and the RTT/loss maths."""

from __future__ import annotations

import math
import os
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from auralink.errors import InvalidAuraID, InvalidHandle, LocalProtocolError
from auralink.identity import AuraID
from auralink_node.errors import NodeError
from auralink_node.store import (
    MIGRATIONS,
    AddressRow,
    Migration,
    NodeStore,
    PathRow,
    PeerRow,
    StoreCorrupt,
    StoreError,
    StoreTooNew,
    direct_path,
    relay_path,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000.0  # wall-clock seconds; every time below is explicit


def peer_id(n: int) -> str:
    """A valid, deterministic AuraID (any 32 bytes form one)."""
    return str(AuraID(n.to_bytes(32, "big")))


ALICE, BOB, RELAY = peer_id(1), peer_id(2), peer_id(3)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "node.db"


@pytest.fixture
def store(path: Path) -> NodeStore:
    return NodeStore.open(path)


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


def siblings(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.parent.iterdir())}


# -- opening and migrations ---------------------------------------------------------------------


def test_empty_file_is_migrated_to_the_latest_version(path: Path) -> None:
    with NodeStore.open(path):
        pass
    db = raw(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"peers", "peer_addresses", "path_stats"} <= tables


def test_reopening_is_idempotent_and_keeps_data(path: Path) -> None:
    with NodeStore.open(path) as store:
        store.peer_seen(ALICE, T0, handle="@alice.aura")
    with NodeStore.open(path) as store:
        assert store.peers() == [PeerRow(ALICE, "@alice.aura", T0, T0, None, 0, 0)]
    assert raw(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_new_migrations_apply_to_an_old_file_and_keep_its_rows(path: Path) -> None:
    with NodeStore.open(path) as store:
        store.peer_seen(ALICE, T0)
    extra = Migration(len(MIGRATIONS) + 1, "reputation", "CREATE TABLE reputation (aura_id TEXT PRIMARY KEY, x REAL);")
    with NodeStore.open(path, migrations=(*MIGRATIONS, extra)) as store:
        assert [row.aura_id for row in store.peers()] == [ALICE]
    db = raw(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == extra.version
    assert db.execute("SELECT count(*) FROM reputation").fetchone()[0] == 0


def test_a_failing_migration_leaves_the_file_at_the_previous_version(path: Path) -> None:
    NodeStore.open(path).close()
    broken = Migration(len(MIGRATIONS) + 1, "half done", "CREATE TABLE half (x); CREATE TABLE peers (x);")
    with pytest.raises(StoreError, match=rf"migration {broken.version} \(half done\) failed"):
        NodeStore.open(path, migrations=(*MIGRATIONS, broken))
    db = raw(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0


def test_a_migration_may_hold_triggers_and_semicolons_in_strings(path: Path) -> None:
    script = """
        CREATE TABLE notes (body TEXT);  -- a comment; with a semicolon
        CREATE TRIGGER notes_default AFTER INSERT ON notes WHEN new.body IS NULL
        BEGIN
            UPDATE notes SET body = 'a; b' WHERE rowid = new.rowid;
        END;
        INSERT INTO notes (body) VALUES (NULL);
    """
    NodeStore.open(path, migrations=(*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "notes", script))).close()
    assert raw(path).execute("SELECT body FROM notes").fetchall() == [("a; b",)]


def test_migrations_must_be_numbered_from_one_without_gaps(path: Path) -> None:
    with pytest.raises(LocalProtocolError, match="1, 2, 3"):
        NodeStore.open(path, migrations=(*MIGRATIONS, Migration(len(MIGRATIONS) + 2, "gap", "SELECT 1;")))


def test_a_database_from_a_newer_version_is_refused_untouched(path: Path) -> None:
    newer = Migration(len(MIGRATIONS) + 1, "from the future", "CREATE TABLE future (x);")
    NodeStore.open(path, migrations=(*MIGRATIONS, newer)).close()
    before = siblings(path)
    with pytest.raises(StoreTooNew, match=r"newer AuraLink.*Upgrade auralink") as info:
        NodeStore.open(path)
    assert (info.value.version, info.value.supported) == (newer.version, len(MIGRATIONS))
    assert isinstance(info.value, NodeError)
    assert siblings(path) == before


@pytest.mark.parametrize(
    "content",
    [b"this is not a database\n" * 100, b"SQLite format 3\x00" + b"\xff" * 4080],
    ids=["text", "damaged-header"],
)
def test_a_corrupt_file_is_refused_untouched_with_advice(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(StoreCorrupt, match="move the file away") as info:
        NodeStore.open(path)
    assert info.value.path == str(path)
    assert siblings(path) == {"node.db": content}


def test_a_damaged_schema_page_is_refused(path: Path) -> None:
    with NodeStore.open(path) as store:
        store.peer_seen(ALICE, T0)
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)  # page 1 after the header: the schema
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorrupt, match="damaged"):
        NodeStore.open(path)


def test_another_programs_database_is_refused(path: Path) -> None:
    path.parent.mkdir(parents=True)
    db = raw(path)
    db.execute("CREATE TABLE peers (something_else INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(StoreCorrupt, match="another program"):
        NodeStore.open(path)


def test_wal_mode_and_pragmas_are_on(store: NodeStore, path: Path) -> None:
    store.peer_seen(ALICE, T0)
    assert raw(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with store._db.read() as db:
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_files_are_private(path: Path) -> None:
    old = os.umask(0o022)
    try:
        with NodeStore.open(path) as store:
            store.peer_seen(ALICE, T0)
            for name in ("node.db", "node.db-wal", "node.db-shm"):
                assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name
    finally:
        os.umask(old)


def test_a_closed_store_refuses_calls(path: Path) -> None:
    store = NodeStore.open(path)
    store.close()
    store.close()
    with pytest.raises(LocalProtocolError, match="closed"):
        store.peers()


# -- peers and addresses ------------------------------------------------------------------------


def test_peer_seen_keeps_first_seen_and_never_moves_last_seen_back(store: NodeStore) -> None:
    store.peer_seen(ALICE, T0, handle="@Alice.aura", record=b"r1")
    store.peer_seen(ALICE, T0 + 10)
    store.peer_seen(ALICE, T0 + 5, record=b"r2")
    assert store.peer(ALICE) == PeerRow(ALICE, "@alice.aura", T0, T0 + 10, b"r2", 0, 0)
    assert store.peer(BOB) is None


def test_connects_and_failures_are_counted(store: NodeStore) -> None:
    store.peer_connected(ALICE, T0)
    store.peer_connected(ALICE, T0 + 1)
    store.peer_failed(ALICE, T0 + 2)
    store.peer_failed(BOB, T0 + 3)
    alice, bob = store.peer(ALICE), store.peer(BOB)
    assert alice is not None and (alice.connects, alice.failures, alice.last_seen) == (2, 1, T0 + 1)
    assert bob is not None and (bob.connects, bob.failures, bob.first_seen) == (0, 1, T0 + 3)
    assert [row.aura_id for row in store.peers()] == [BOB, ALICE]  # most recently seen first


def test_addresses_are_canonical_and_count_dial_outcomes(store: NodeStore) -> None:
    store.address_seen(ALICE, "127.0.0.1:7700", "record", T0)
    store.address_seen(ALICE, " 127.0.0.1:7700", "dialed", T0 + 1, success=True)
    store.address_seen(ALICE, "[::1]:7700", "dialed", T0 + 2, success=False)
    assert store.addresses(ALICE) == [
        AddressRow(ALICE, "[::1]:7700", "dialed", T0 + 2, T0 + 2, 0, 1),
        AddressRow(ALICE, "127.0.0.1:7700", "dialed", T0, T0 + 1, 1, 0),
    ]
    assert store.peer(ALICE) is not None  # the peer row exists for the address to hang off


def test_forgetting_a_peer_removes_its_addresses_and_paths(store: NodeStore) -> None:
    store.address_seen(ALICE, "10.0.0.1:7700", "observed", T0)
    store.record_rtt(ALICE, direct_path("10.0.0.1:7700"), 20.0, T0)
    store.peer_seen(BOB, T0)
    assert store.forget_peer(ALICE) is True
    assert store.forget_peer(ALICE) is False
    assert store.addresses(ALICE) == [] and store.path_stats(ALICE) == []
    assert [row.aura_id for row in store.peers()] == [BOB]


# -- path statistics ----------------------------------------------------------------------------


def test_rtt_smoothing_follows_rfc_6298(store: NodeStore) -> None:
    path = direct_path("192.0.2.1:7700")
    store.record_rtt(ALICE, path, 100.0, T0)  # first sample: SRTT = R, RTTVAR = R / 2
    assert store.path_stats(ALICE) == [PathRow(ALICE, path, 1, 100.0, 50.0, 0, 0.0, T0)]
    store.record_rtt(ALICE, path, 200.0, T0 + 1)
    # RTTVAR = 3/4 * 50 + 1/4 * |100 - 200| = 62.5 ; SRTT = 7/8 * 100 + 1/8 * 200 = 112.5
    store.record_rtt(ALICE, path, 12.5, T0 + 2)
    # RTTVAR = 3/4 * 62.5 + 1/4 * |112.5 - 12.5| = 71.875 ; SRTT = 7/8 * 112.5 + 1/8 * 12.5 = 100
    (row,) = store.path_stats(ALICE)
    assert (row.samples, row.rtt_ewma_ms, row.rtt_var_ms, row.last_update) == (3, 100.0, 71.875, T0 + 2)


def test_loss_smoothing_starts_from_no_loss(store: NodeStore) -> None:
    path = relay_path(RELAY)
    store.record_loss(ALICE, path, True, T0)
    store.record_loss(ALICE, path, False, T0 + 1)
    store.record_loss(ALICE, path, True, T0 + 2)
    (row,) = store.path_stats(ALICE)
    expected = ((1 / 8) * 7 / 8) * 7 / 8 + 1 / 8  # 1/8, then 7/64, then 49/512 + 64/512
    assert row.loss_samples == 3 and row.samples == 0 and row.rtt_ewma_ms is None
    assert math.isclose(row.loss_ewma, expected)


def test_paths_are_kept_apart_and_named_canonically(store: NodeStore) -> None:
    store.record_rtt(ALICE, "direct:[0:0::1]:7700", 1.0, T0)
    store.record_rtt(ALICE, f"relay:{RELAY.upper()}", 30.0, T0)
    assert [row.path for row in store.path_stats(ALICE)] == ["direct:[::1]:7700", f"relay:{RELAY}"]


@pytest.mark.parametrize("rtt", [math.nan, math.inf, -1.0, True])
def test_bad_rtt_samples_are_refused(store: NodeStore, rtt: float) -> None:
    with pytest.raises(LocalProtocolError, match="RTT sample"):
        store.record_rtt(ALICE, direct_path("192.0.2.1:1"), rtt, T0)
    assert store.path_stats(ALICE) == []


def test_bad_inputs_are_refused_before_any_write(store: NodeStore) -> None:
    with pytest.raises(InvalidAuraID):
        store.peer_seen("not-an-aura-id", T0)
    with pytest.raises(InvalidHandle):
        store.peer_seen(ALICE, T0, handle="@no spaces.aura")
    with pytest.raises(LocalProtocolError, match="now must be"):
        store.peer_seen(ALICE, math.nan)
    with pytest.raises(LocalProtocolError, match="record"):
        store.peer_seen(ALICE, T0, record=b"x" * 1001)
    with pytest.raises(LocalProtocolError, match="HOST:PORT"):
        store.address_seen(ALICE, "example.com", "config", T0)
    with pytest.raises(LocalProtocolError, match="port 0"):
        store.address_seen(ALICE, "127.0.0.1:0", "config", T0)
    with pytest.raises(LocalProtocolError, match="address source"):
        store.address_seen(ALICE, "127.0.0.1:1", "gossip", T0)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="neither"):
        store.record_loss(ALICE, "carrier-pigeon:1", True, T0)
    with pytest.raises(InvalidAuraID):
        store.record_loss(ALICE, "relay:nope", True, T0)
    assert store.peers() == []


def test_sql_text_in_values_is_stored_as_data(store: NodeStore) -> None:
    record = b"'); DROP TABLE peers; --"
    store.peer_seen(ALICE, T0, record=record)
    row = store.peer(ALICE)
    assert row is not None and row.last_record == record


# -- durability ---------------------------------------------------------------------------------

CRASHER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from auralink.identity import AuraID
    from auralink_node.store import NodeStore, direct_path

    store = NodeStore.open(Path(sys.argv[1]))
    committed = int(sys.argv[2])
    for n in range(committed):
        peer = str(AuraID((1000 + n).to_bytes(32, "big")))
        store.peer_seen(peer, 1000.0 + n, record=n.to_bytes(4, "big") * 8)
        store.address_seen(peer, f"10.0.{n // 256}.{n % 256}:7700", "dialed", 1000.0 + n, success=True)
        store.record_rtt(peer, direct_path("10.0.0.1:7700"), float(n), 1000.0 + n)
    print("ready", flush=True)
    n = committed
    while True:  # keeps writing until it is killed
        peer = str(AuraID((1000 + n).to_bytes(32, "big")))
        store.peer_seen(peer, 1000.0 + n, record=b"x" * 900)
        store.peer_connected(peer, 1000.0 + n)
        if n == committed:
            print("writing", flush=True)
        n += 1
    """
)


class LineReader:
    """Lines from a child's stdout, with a timeout, and no buffering that could hide a line from select()."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.process = process
        self.fd = process.stdout.fileno()
        self.pending = b""

    def line(self, timeout: float = 60.0) -> str:
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            chunk = os.read(self.fd, 4096) if ready else b""
            if not chunk:
                self.process.kill()
                assert self.process.stderr is not None
                pytest.fail(f"the writer stopped talking: {self.process.stderr.read().decode()}")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode()


def test_committed_rows_survive_kill_9_mid_write(path: Path) -> None:
    committed = 200
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(path), str(committed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    try:
        reader = LineReader(process)
        assert reader.line() == "ready"
        assert reader.line() == "writing"  # it is inside the further write loop
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()
    assert (path.parent / "node.db-wal").exists()  # the crash left a WAL to recover from

    with NodeStore.open(path) as store:
        for n in range(committed):
            peer = str(AuraID((1000 + n).to_bytes(32, "big")))
            assert store.peer(peer) == PeerRow(peer, None, 1000.0 + n, 1000.0 + n, n.to_bytes(4, "big") * 8, 0, 0)
            assert store.addresses(peer) == [
                AddressRow(peer, f"10.0.{n // 256}.{n % 256}:7700", "dialed", 1000.0 + n, 1000.0 + n, 1, 0)
            ]
            assert store.path_stats(peer) == [
                PathRow(peer, "direct:10.0.0.1:7700", 1, float(n), n / 2, 0, 0.0, 1000.0 + n)
            ]
        later = [row for row in store.peers() if row.last_record == b"x" * 900]
        assert later, "the loop committed at least one row before the kill"
        for row in later:  # a row from the loop is whole: its record and, at most one commit behind, its connect
            assert row.connects in (0, 1)
        assert sum(row.connects == 0 for row in later) <= 1  # only the last one can lack its second commit
    assert raw(path).execute("PRAGMA integrity_check").fetchall() == [("ok",)]


# -- DHT contacts, handle pins, our record's sequence number --------------------------------------


def test_contacts_survive_a_reopen_most_recent_first_and_are_capped(path: Path) -> None:
    with NodeStore.open(path) as store:
        store.save_contacts([(bytes([1]) * 20, "127.0.0.1", 7700), (bytes([2]) * 20, "::1", 7701)], T0)
        store.save_contacts([(bytes([1]) * 20, "127.0.0.2", 7702)], T0 + 5)  # moved
    with NodeStore.open(path) as store:
        assert store.contacts() == [(bytes([1]) * 20, "127.0.0.2", 7702), (bytes([2]) * 20, "::1", 7701)]
        store.save_contacts([(bytes([n]) * 20, "10.0.0.1", 1000 + n) for n in range(3, 10)], T0 + 9, keep=4)
        assert len(store.contacts()) == 4
        assert store.contacts(limit=1)[0][0] in {bytes([n]) * 20 for n in range(3, 10)}


@pytest.mark.parametrize(
    "contact",
    [(b"short", "127.0.0.1", 1), (bytes(20), "example.com", 1), (bytes(20), "127.0.0.1", 0), (bytes(20), "::1", True)],
)
def test_bad_contacts_are_refused_and_nothing_is_written(store: NodeStore, contact: tuple[bytes, str, int]) -> None:
    with pytest.raises(LocalProtocolError):
        store.save_contacts([(bytes([9]) * 20, "127.0.0.1", 9), contact], T0)
    assert store.contacts() == []


def test_a_pin_is_set_once_kept_when_seen_again_and_replaced_only_explicitly(store: NodeStore) -> None:
    assert store.pin("@bob.aura") is None
    store.set_pin("bob", BOB, T0)
    store.set_pin("@bob.aura", BOB, T0 + 10)
    assert store.pin("@BOB.aura") == (str(BOB), T0)  # pinned_at is the first time
    store.set_pin("@bob.aura", ALICE, T0 + 20)
    assert store.pin("@bob.aura") == (str(ALICE), T0 + 20)
    assert store.forget_pin("@bob.aura") and not store.forget_pin("@bob.aura")
    assert store.pin("@bob.aura") is None


def test_record_seq_starts_at_first_then_grows_by_one_across_reopens(path: Path) -> None:
    with NodeStore.open(path) as store:
        assert store.next_record_seq(first=1_000) == 1_000
        assert store.next_record_seq(first=5) == 1_001  # first applies only once
    with NodeStore.open(path) as store:
        assert store.next_record_seq(first=0) == 1_002
    with pytest.raises(LocalProtocolError):
        NodeStore.open(path).next_record_seq(first=-1)
