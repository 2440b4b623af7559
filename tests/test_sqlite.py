"""The SQLite file every store shares (auralink._sqlite): refusals in each store's errors, migrations, transactions."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auralink._sqlite import Database, DatabaseErrors, DatabaseKind, Migration, _statements
from auralink.errors import LocalProtocolError, MemoryStoreError
from auralink_node.errors import StoreCorrupt, StoreError, StoreTooNew

APPLICATION_ID = 0x54455354  # "TEST"
ADVICE = "Move {path} away to start again"
FULL = DatabaseKind("test database", APPLICATION_ID, DatabaseErrors(StoreError, StoreCorrupt, StoreTooNew), ADVICE)
"""A kind with an error class for every refusal: the node store's."""
PLAIN = DatabaseKind(
    "plain database", APPLICATION_ID, DatabaseErrors(MemoryStoreError, closed=MemoryStoreError), ADVICE
)
"""A kind with one error class for everything, closed included, as the memory store has."""
OWNED = DatabaseKind(
    "owned database",
    APPLICATION_ID,
    DatabaseErrors(MemoryStoreError),
    ADVICE,
    busy_timeout_ms=0,
    exclusive=True,
    secure_delete=True,
)
"""A kind one connection owns, as the memory store is."""

MIGRATIONS = (
    Migration(1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"),
    Migration(
        2,
        "tags",
        "CREATE TABLE tags (item_id INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE, tag TEXT NOT NULL);",
    ),
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "test.db"


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


def siblings(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.parent.iterdir())}


def names(db: Database) -> list[str]:
    with db.read() as connection:
        return [str(row[0]) for row in connection.execute("SELECT name FROM items ORDER BY id")]


# -- opening --------------------------------------------------------------------------------------


def test_open_creates_a_private_file_migrated_to_the_latest_version(path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = Database.open(path, FULL, MIGRATIONS)
        with db.write() as connection:
            connection.execute("INSERT INTO items (name) VALUES ('a')")
        for file in path.parent.iterdir():
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        db.close()
    finally:
        os.umask(old)
    check = raw(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert check.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("kind", [FULL, OWNED], ids=["shared", "owned"])
def test_the_connection_has_the_kinds_pragmas(path: Path, kind: DatabaseKind) -> None:
    db = Database.open(path, kind, MIGRATIONS)
    with db.read() as connection:
        pragmas = {
            name: connection.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("foreign_keys", "synchronous", "busy_timeout", "locking_mode")
        }
        secure_delete = connection.execute("PRAGMA secure_delete").fetchone()[0]
    db.close()
    assert pragmas == {
        "foreign_keys": 1,
        "synchronous": 1,  # NORMAL
        "busy_timeout": kind.busy_timeout_ms,
        "locking_mode": "exclusive" if kind.exclusive else "normal",
    }
    if kind.secure_delete:  # otherwise the build's default, which Debian's sets to on
        assert secure_delete == 1


def test_an_owned_file_keeps_every_other_opener_out_until_closed(path: Path) -> None:
    db = Database.open(path, OWNED, MIGRATIONS)
    with pytest.raises(MemoryStoreError, match="another process or connection") as caught:
        Database.open(path, OWNED, MIGRATIONS)
    assert caught.value.path == str(path)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        raw(path).execute("SELECT count(*) FROM items").fetchone()
    db.close()
    Database.open(path, OWNED, MIGRATIONS).close()


# -- refusals -----------------------------------------------------------------------------------


# Ways to spoil a file, shared with the stores' own tests.


def write_garbage(path: Path) -> None:
    """A file that is not SQLite at all."""
    path.write_bytes(b"this is not a database\n" * 100)


def write_damaged_header(path: Path) -> None:
    """A file with SQLite's magic string and a garbage header."""
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4080)


def damage_schema_page(path: Path) -> None:
    """Overwrite page 1 of a database after its header: the schema."""
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)
    path.write_bytes(bytes(data))


def write_foreign(path: Path) -> None:
    """Another program's database: tables, no application_id of ours."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE items (something_else INTEGER)")
        db.commit()


def set_user_version(path: Path, version: int) -> None:
    """Mark a database as being at schema ``version``, as a newer AuraLink would."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {version:d}")


SPOILED = ("garbage", "damaged-header", "damaged-schema", "foreign", "newer")
"""Every way :func:`spoil` can spoil a file."""


def spoil(path: Path, case: str, *, create: Callable[[Path], None], latest: int) -> str:
    """Spoil the file at ``path`` as ``case`` says; return a pattern of the refusal's message.

    ``create`` makes a good file first where the case damages one; ``latest`` is the newest
    schema version of the store, which the "newer" case exceeds by one.
    """
    if case in ("damaged-schema", "newer"):
        create(path)
    if case == "newer":
        set_user_version(path, latest + 1)
        return rf"newer AuraLink \(schema version {latest + 1}; this build knows up to {latest}\)"
    {
        "garbage": write_garbage,
        "damaged-header": write_damaged_header,
        "damaged-schema": damage_schema_page,
        "foreign": write_foreign,
    }[case](path)
    return "another program" if case == "foreign" else "not a SQLite database, or a damaged one"


def assert_refused_untouched(
    open_: Callable[[Path], object], path: Path, error: type[Exception], message: str
) -> BaseException:
    """Opening ``path`` raises ``error`` (carrying the path) matching ``message``, and changes no file beside it."""
    before = siblings(path)
    with pytest.raises(error, match=message) as caught:
        open_(path)
    assert getattr(caught.value, "path", None) == str(path)
    assert siblings(path) == before
    return caught.value


def create_test_database(path: Path) -> None:
    Database.open(path, FULL, MIGRATIONS).close()


@pytest.mark.parametrize("case", SPOILED)
def test_a_spoiled_file_raises_the_kinds_error_and_is_left_untouched(path: Path, case: str) -> None:
    path.parent.mkdir(parents=True)
    message = spoil(path, case, create=create_test_database, latest=len(MIGRATIONS))
    error = StoreTooNew if case == "newer" else StoreCorrupt
    refusal = assert_refused_untouched(partial(Database.open, kind=FULL, migrations=MIGRATIONS), path, error, message)
    assert type(refusal) is error
    if isinstance(refusal, StoreTooNew):
        assert (refusal.version, refusal.supported) == (3, 2)
    else:
        assert str(refusal).endswith(f". Move {path} away to start again")
    # A kind without StoreCorrupt or StoreTooNew raises its one class.
    assert_refused_untouched(partial(Database.open, kind=PLAIN, migrations=MIGRATIONS), path, MemoryStoreError, message)


def test_an_uncreatable_file_raises_the_kinds_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StoreError, match="cannot create the test database"):
        Database.open(tmp_path / "file" / "test.db", FULL, MIGRATIONS)


def test_corrupt_names_the_file_and_gives_the_advice(path: Path) -> None:
    db = Database.open(path, FULL, MIGRATIONS)
    error = db.corrupt("holds a bad row")
    db.close()
    assert isinstance(error, StoreCorrupt) and error.path == str(path)
    assert str(error) == f"{path}: holds a bad row. Move {path} away to start again"


# -- migrations -----------------------------------------------------------------------------------


def test_only_new_migrations_run_each_with_on_migrate_in_its_transaction(path: Path) -> None:
    seen: list[int] = []

    def note(connection: sqlite3.Connection, migration: Migration) -> None:
        seen.append(migration.version)
        connection.execute("INSERT INTO items (name) VALUES (?)", (f"from step {migration.version}",))

    Database.open(path, FULL, MIGRATIONS[:1], on_migrate=note).close()
    db = Database.open(path, FULL, MIGRATIONS, on_migrate=note)
    assert seen == [1, 2]
    assert names(db) == ["from step 1", "from step 2"]
    db.close()
    Database.open(path, FULL, MIGRATIONS, on_migrate=note).close()
    assert seen == [1, 2]


def refuse(connection: sqlite3.Connection, migration: Migration) -> None:
    raise StoreError("the hook refused", "hook")


FAILING_STEPS: dict[str, tuple[str, Callable[[sqlite3.Connection, Migration], None] | None, str]] = {
    "statement": ("CREATE TABLE half (x); CREATE TABLE items (x);", None, "failed: table items already exists"),
    "foreign-key": (
        "CREATE TABLE half (x); INSERT INTO tags (item_id, tag) VALUES (42, 'lost');",
        None,
        "breaks foreign keys",
    ),
    "on_migrate": ("CREATE TABLE half (x);", refuse, "the hook refused"),
}
"""Per case: the third step's SQL, its on_migrate hook, and how it fails."""


@pytest.mark.parametrize("case", FAILING_STEPS, ids=list(FAILING_STEPS))
def test_a_failing_step_is_rolled_back_whole_and_the_file_stays_at_the_previous_version(path: Path, case: str) -> None:
    sql, hook, message = FAILING_STEPS[case]
    Database.open(path, FULL, MIGRATIONS).close()
    with pytest.raises(StoreError, match=message):
        Database.open(path, FULL, (*MIGRATIONS, Migration(3, "third", sql)), on_migrate=hook)
    with contextlib.closing(raw(path)) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 2
        assert check.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0
        assert check.execute("SELECT count(*) FROM tags").fetchone()[0] == 0


def test_migrations_must_run_1_2_3(path: Path) -> None:
    with pytest.raises(LocalProtocolError, match="1, 2, 3"):
        Database.open(path, FULL, (MIGRATIONS[1],))
    assert not path.exists()


def test_statements_respect_strings_comments_and_triggers() -> None:
    script = """
        CREATE TABLE notes (body TEXT);  -- a comment; with a semicolon
        CREATE TRIGGER fill AFTER INSERT ON notes BEGIN UPDATE notes SET body = 'a; b'; END;
        INSERT INTO notes (body) VALUES (';')
    """
    statements = list(_statements(script))
    assert len(statements) == 3
    assert statements[0] == "CREATE TABLE notes (body TEXT);"
    assert statements[1].startswith("-- a comment; with a semicolon") and statements[1].endswith("'a; b'; END;")
    assert statements[2].startswith("INSERT INTO notes (body) VALUES (';')")
    with pytest.raises(LocalProtocolError, match="incomplete statement"):
        list(_statements("CREATE TRIGGER t AFTER INSERT ON notes BEGIN SELECT 1;"))


# -- transactions ---------------------------------------------------------------------------------


def test_an_sqlite_error_becomes_the_kinds_error_and_rolls_back(path: Path) -> None:
    db = Database.open(path, FULL, MIGRATIONS)
    with pytest.raises(StoreError, match=r"write failed .*NOT NULL") as caught, db.write() as connection:
        connection.execute("INSERT INTO items (name) VALUES ('kept?')")
        connection.execute("INSERT INTO items (name) VALUES (NULL)")
    assert type(caught.value) is StoreError
    with pytest.raises(StoreError, match="read failed"), db.read() as connection:
        connection.execute("SELECT nothing FROM items")
    with pytest.raises(StoreError, match="FOREIGN KEY"), db.write() as connection:
        connection.execute("INSERT INTO tags (item_id, tag) VALUES (42, 'orphan')")
    assert names(db) == []
    db.close()


def test_any_other_exception_rolls_back_and_passes_through(path: Path) -> None:
    db = Database.open(path, FULL, MIGRATIONS)
    with pytest.raises(KeyError), db.write() as connection:
        connection.execute("INSERT INTO items (name) VALUES ('gone')")
        raise KeyError("the caller's own bug")
    with db.write() as connection:
        connection.execute("INSERT INTO items (name) VALUES ('kept')")
    assert names(db) == ["kept"]
    db.close()


def test_on_commit_runs_after_the_commit_and_never_after_a_rollback(path: Path) -> None:
    db = Database.open(path, FULL, MIGRATIONS)
    seen: list[str] = []
    with db.write() as connection:
        connection.execute("INSERT INTO items (name) VALUES ('a')")
        db.on_commit(
            lambda: seen.append(
                f"committed, other readers see {raw(path).execute('SELECT name FROM items').fetchall()}"
            )
        )
        assert seen == []
    assert seen == ["committed, other readers see [('a',)]"]
    with pytest.raises(StoreError), db.write() as connection:
        db.on_commit(lambda: seen.append("rolled back"))
        connection.execute("INSERT INTO items (name) VALUES (NULL)")
    with db.read():
        pass  # a later transaction does not run what the failed one queued
    assert seen == ["committed, other readers see [('a',)]"]
    with pytest.raises(LocalProtocolError, match="inside a transaction"):
        db.on_commit(lambda: None)
    db.close()


def test_truncate_wal_empties_the_wal_after_the_commit(path: Path) -> None:
    db = Database.open(path, OWNED, MIGRATIONS)
    wal = path.with_name(path.name + "-wal")
    with db.write() as connection:
        connection.execute("INSERT INTO items (name) VALUES ('secret')")
    assert wal.stat().st_size > 0
    with db.write(truncate_wal=True) as connection:
        connection.execute("DELETE FROM items")
    assert wal.stat().st_size == 0
    assert b"secret" not in path.read_bytes()  # secure_delete zeroed the row in the page checkpointed back
    db.close()


def test_a_closed_database_raises_the_kinds_closed_error(path: Path) -> None:
    default = Database.open(path, FULL, MIGRATIONS)
    default.close()
    default.close()
    with pytest.raises(LocalProtocolError, match="the test database is closed"), default.read():
        pass
    custom = Database.open(path, PLAIN, MIGRATIONS)
    custom.close()
    with pytest.raises(MemoryStoreError, match="the plain database is closed") as caught, custom.write():
        pass
    assert caught.value.path == str(path)


def test_close_can_optimize_first(path: Path) -> None:
    db = Database.open(path, FULL, MIGRATIONS)
    with db.write() as connection:
        connection.executemany("INSERT INTO items (name) VALUES (?)", [(str(i),) for i in range(100)])
        connection.execute("CREATE INDEX items_by_name ON items (name)")
        connection.execute("SELECT id FROM items WHERE name = '7'").fetchall()
    db.close(optimize=True)
    assert raw(path).execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone()[0] == 1


# -- property: any damage is refused with the kind's error, never a crash ---------------------------


def _valid_file() -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "test.db"
        db = Database.open(path, FULL, MIGRATIONS)
        with db.write() as connection:
            connection.executemany("INSERT INTO items (name) VALUES (?)", [(f"item {i}" * 20,) for i in range(200)])
            connection.execute("INSERT INTO tags (item_id, tag) VALUES (1, 'first')")
        db.close()
        return path.read_bytes()


VALID = _valid_file()


@given(
    patches=st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(VALID) - 1), st.binary(min_size=1, max_size=64)),
        min_size=1,
        max_size=8,
    ),
    cut=st.one_of(st.none(), st.integers(min_value=0, max_value=len(VALID))),
)
def test_a_damaged_file_opens_and_reads_or_raises_the_kinds_error(
    patches: list[tuple[int, bytes]], cut: int | None
) -> None:
    data = bytearray(VALID)
    for offset, patch in patches:
        data[offset : offset + len(patch)] = patch
    if cut is not None:
        del data[cut:]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "test.db"
        path.write_bytes(bytes(data))
        try:
            db = Database.open(path, FULL, MIGRATIONS)
        except StoreError:
            return
        try:
            with db.read() as connection:
                connection.execute("PRAGMA integrity_check").fetchall()
                connection.execute("SELECT * FROM items").fetchall()
                connection.execute("SELECT * FROM tags").fetchall()
            with db.write() as connection:
                connection.execute("INSERT INTO items (name) VALUES ('new')")
        except StoreError:
            pass
        finally:
            db.close()
