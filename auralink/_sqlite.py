"""One SQLite file of ours: create it private, refuse what is not ours, migrate it, and run short transactions.

Theory of operation
===================

Three stores keep their state in SQLite: the node's database (``auralink_node.store``), the
provider database (``auralink.agents.providers``) and the agent memory
(``auralink.agents.memory``). They differ in their tables and in their exception classes, not in
how they treat the file, which lives here once:

*Files.* :meth:`Database.open` creates the parent directory with mode 0700 and the file with mode
0600 (exactly: the umask can only narrow ``O_CREAT``'s mode); SQLite's ``-wal`` and ``-shm``
inherit it. A file that exists is opened as it is.

*Refusals.* Before anything is written, the file's header is read: a file that is not SQLite, or
is damaged, and a SQLite database whose ``PRAGMA application_id`` is another program's, are
refused as *corrupt*; a file whose ``PRAGMA user_version`` is above the newest migration we know
is refused as *too new*. A refused file is left untouched, and the message says what to do with
it (:attr:`DatabaseKind.advice`).

*Pragmas.* WAL with ``synchronous=NORMAL`` (a crash loses nothing committed; a power loss may
lose the last transactions, never consistency), ``busy_timeout``, and foreign keys enforced once
the migrations have run. :attr:`DatabaseKind.exclusive` adds ``locking_mode=EXCLUSIVE`` (set
before the first read: the connection keeps the file's lock until it closes, and the WAL index
lives in the heap, so no other connection can open the file); :attr:`DatabaseKind.secure_delete`
adds ``secure_delete=ON`` (deleted content is overwritten with zeros), refusing a SQLite build
that cannot do it.

*Migrations.* A store's schema is a tuple of :class:`Migration`, numbered 1, 2, 3, ...;
``user_version`` holds the number a file is at. Opening applies each newer migration in its own
``BEGIN IMMEDIATE`` transaction together with the version bump (and ``application_id``), so a
crash mid-migration leaves the file at the previous version and the next open retries; the
version is read again inside the transaction, so two processes opening a file at once migrate it
once. Foreign keys are off while migrations run, as SQLite's "making other kinds of table schema
changes" recipe requires, and ``PRAGMA foreign_key_check`` must pass before each commits. Scripts
are split with :func:`sqlite3.complete_statement`, not ``executescript`` (which commits first), so
a semicolon in a string or a trigger body is safe. Append migrations; never edit one that shipped.

*Transactions.* One connection serves a :class:`Database`, guarded by :attr:`Database.lock`, so
calls may come from the event loop or from worker threads; :meth:`Database.write` and
:meth:`Database.read` hold the lock for one short transaction. Work queued with
:meth:`Database.on_commit` (an in-memory index kept equal to the file, say) runs only once the
transaction has committed, still under the lock, so it never shows what SQLite rolled back.

*Errors.* SQLite's errors are translated here, once, into the store's own exception classes,
which each store passes in as :class:`DatabaseErrors`: callers of the node store see
``StoreError``, ``StoreCorrupt`` and ``StoreTooNew``, callers of the provider store
``ProviderStoreError``, callers of the memory ``MemoryStoreError``. A migration list that is not
numbered 1, 2, 3, ... is a bug of ours and raises :class:`~auralink.errors.LocalProtocolError`.

Nothing here reads a clock.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from auralink.errors import AuralinkError, LocalProtocolError

__all__ = ["Database", "DatabaseErrors", "DatabaseKind", "Migration"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward step of the schema, applied in a single transaction."""

    version: int
    """The ``user_version`` the file has once this step is applied (1, 2, 3, ...)."""
    description: str
    """What the step does, for logs and for the reader."""
    sql: str
    """The statements, separated by ``;``."""


def _misuse(message: str, path: str) -> AuralinkError:
    """A call on a closed store: the caller's mistake."""
    return LocalProtocolError(message)


@dataclass(frozen=True, slots=True)
class DatabaseErrors:
    """The exception classes a store raises, each called with a message and the file's path."""

    failed: Callable[[str, str], AuralinkError]
    """The file cannot be created, opened, configured, migrated, read or written."""
    corrupt: Callable[[str, str], AuralinkError] | None = None
    """The file is not SQLite, is damaged, or is another program's database; ``failed`` if ``None``."""
    too_new: Callable[[str, str, int, int], AuralinkError] | None = None
    """The file is at a newer schema: called with ``(message, path, version, supported)``; ``failed`` if ``None``."""
    closed: Callable[[str, str], AuralinkError] = _misuse
    """A call after :meth:`Database.close`; :class:`~auralink.errors.LocalProtocolError` by default."""


@dataclass(frozen=True, slots=True)
class DatabaseKind:
    """What sort of file a store keeps, and how it treats it."""

    name: str
    """What the file is called in messages: ``"node database"``."""
    application_id: int
    """``PRAGMA application_id`` that marks the file as this store's."""
    errors: DatabaseErrors
    """The store's exception classes."""
    advice: str
    """What to do with a corrupt or foreign file, said after the refusal; ``{path}`` is replaced by the path."""
    busy_timeout_ms: int = 5000
    """How long a statement waits for another connection's lock before failing."""
    exclusive: bool = False
    """Hold the file's lock from the first read until close (``locking_mode=EXCLUSIVE``)."""
    secure_delete: bool = False
    """Overwrite deleted content with zeros (``secure_delete=ON``); refuse a SQLite build that cannot."""


class Database:
    """One open SQLite file of ours; use :meth:`open`."""

    def __init__(self, connection: sqlite3.Connection, path: Path, kind: DatabaseKind) -> None:
        """Wrap a connection that :meth:`open` has configured and migrated."""
        self._connection: sqlite3.Connection | None = connection
        self._path = path
        self._kind = kind
        self._after_commit: list[Callable[[], object]] | None = None
        self.lock = threading.Lock()
        """Serialises every use of the connection; a store may take it to guard state kept beside the file."""

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @classmethod
    def open(
        cls,
        path: Path,
        kind: DatabaseKind,
        migrations: Sequence[Migration],
        *,
        on_migrate: Callable[[sqlite3.Connection, Migration], None] | None = None,
    ) -> Database:
        """Open (creating with mode 0600 if needed), check, configure and migrate the database at ``path``.

        ``on_migrate`` runs inside each migration's transaction, after its statements, to write
        rows that depend on how the store was opened. A file that is refused is not modified.
        """
        latest = _check_migrations(migrations)
        _create_private(path, kind)
        try:
            connection = sqlite3.connect(
                path, timeout=kind.busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise kind.errors.failed(f"{path}: cannot open the {kind.name} ({exc})", str(path)) from exc
        try:
            _refuse_foreign(connection, path, kind, latest)
            _configure(connection, path, kind)
            _migrate(connection, path, kind, migrations, on_migrate)
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, kind)

    def close(self, *, optimize: bool = False) -> None:
        """Close the connection (first running ``PRAGMA optimize`` if asked); closing twice is allowed."""
        with self.lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                if optimize:
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("PRAGMA optimize")
                connection.close()

    @contextlib.contextmanager
    def write(self, *, truncate_wal: bool = False) -> Iterator[sqlite3.Connection]:
        """One short ``BEGIN IMMEDIATE`` transaction under the lock; SQLite errors become the store's.

        With ``truncate_wal``, the WAL is then checkpointed into the main file and truncated,
        because its older frames still hold what the transaction deleted or overwrote.
        """
        with self._transaction("BEGIN IMMEDIATE", "write") as connection:
            yield connection
            if truncate_wal:
                self.on_commit(lambda: self._truncate_wal(connection))

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """One short read transaction (a consistent snapshot) under the lock; SQLite errors become the store's."""
        with self._transaction("BEGIN", "read") as connection:
            yield connection

    def on_commit(self, action: Callable[[], object]) -> None:
        """Run ``action`` once the current transaction has committed (never if it rolls back)."""
        if self._after_commit is None:
            raise LocalProtocolError("on_commit is for use inside a transaction")
        self._after_commit.append(action)

    def corrupt(self, why: str) -> AuralinkError:
        """The store's error for a file found damaged (``why``), with the advice of its kind."""
        return _corrupt(self._path, self._kind, why)

    @contextlib.contextmanager
    def _transaction(self, begin: str, what: str) -> Iterator[sqlite3.Connection]:
        with self.lock:
            connection = self._connection
            if connection is None:
                raise self._kind.errors.closed(f"the {self._kind.name} is closed", str(self._path))
            self._after_commit = []
            try:
                with _atomic(connection, begin):
                    yield connection
            except sqlite3.Error as exc:
                raise self._kind.errors.failed(f"{self._path}: {what} failed ({exc})", str(self._path)) from exc
            finally:
                actions, self._after_commit = self._after_commit or [], None
            for action in actions:
                action()

    def _truncate_wal(self, connection: sqlite3.Connection) -> None:
        failed = self._kind.errors.failed
        try:
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            raise failed(f"{self._path}: checkpoint failed ({exc})", str(self._path)) from exc
        if busy:
            raise failed(
                f"{self._path}: committed, but the WAL could not be truncated (busy), so it still holds old pages",
                str(self._path),
            )


# ---------------------------------------------------------------------------------------------
# Opening


def _check_migrations(migrations: Sequence[Migration]) -> int:
    """The newest version of ``migrations``, once they are seen to run 1, 2, 3, ..."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise LocalProtocolError(
                f"migration versions must run 1, 2, 3, ...; found {migration.version} at {expected}"
            )
    return len(migrations)


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into statements (semicolons in strings and triggers are respected)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                yield pending.strip()
            pending = ""
    if pending.strip(" \t\r\n;"):
        raise LocalProtocolError(f"migration ends with an incomplete statement: {pending.strip()[:60]!r}")


def _create_private(path: Path, kind: DatabaseKind) -> None:
    """Create the parent directory (0700) and an empty file with mode 0600, unless it exists."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
    except OSError as exc:
        raise kind.errors.failed(f"{path}: cannot create the {kind.name} ({exc.strerror})", str(path)) from exc
    try:
        os.fchmod(fd, 0o600)  # the umask can only narrow O_CREAT's mode; make it exact
    finally:
        os.close(fd)


def _corrupt(path: Path, kind: DatabaseKind, why: str) -> AuralinkError:
    make = kind.errors.corrupt or kind.errors.failed
    return make(f"{path}: {why}. {kind.advice.format(path=path)}", str(path))


def _refuse_foreign(connection: sqlite3.Connection, path: Path, kind: DatabaseKind, latest: int) -> None:
    """Refuse, without writing anything, a file that is damaged, someone else's, or newer than us."""
    try:
        if kind.exclusive:  # before the first read, which takes the lock
            connection.execute("PRAGMA locking_mode = EXCLUSIVE")
        objects = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise kind.errors.failed(
                f"{path}: the {kind.name} is open in another process or connection, which holds its lock; "
                "close that one first",
                str(path),
            ) from exc
        raise _corrupt(path, kind, f"not a SQLite database, or a damaged one ({exc})") from exc
    if application_id != kind.application_id and (application_id != 0 or objects or version):
        raise _corrupt(path, kind, f"a SQLite database of another program (application_id {application_id:#x})")
    if version > latest:
        message = (
            f"{path}: written by a newer AuraLink (schema version {version}; this build knows up to {latest}). "
            "Upgrade auralink, or move the file away to start with an empty database"
        )
        if kind.errors.too_new is None:
            raise kind.errors.failed(message, str(path))
        raise kind.errors.too_new(message, str(path), version, latest)


def _configure(connection: sqlite3.Connection, path: Path, kind: DatabaseKind) -> None:
    # PRAGMA values cannot be bound parameters; every value formatted here is an int of ours.
    try:
        connection.execute(f"PRAGMA busy_timeout = {kind.busy_timeout_ms:d}")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        connection.execute("PRAGMA synchronous = NORMAL")
        if kind.secure_delete:
            connection.execute("PRAGMA secure_delete = ON")
            secure = connection.execute("PRAGMA secure_delete").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, kind, f"cannot be configured ({exc})") from exc
    if str(mode).lower() != "wal":
        raise kind.errors.failed(
            f"{path}: SQLite refused WAL mode (got {mode!r}); keep the {kind.name} on a local disk", str(path)
        )
    if kind.secure_delete and secure != 1:
        raise kind.errors.failed(f"{path}: this SQLite build cannot overwrite deleted content", str(path))


def _migrate(
    connection: sqlite3.Connection,
    path: Path,
    kind: DatabaseKind,
    migrations: Sequence[Migration],
    on_migrate: Callable[[sqlite3.Connection, Migration], None] | None,
) -> None:
    """Apply each migration newer than the file, one transaction each, then enable foreign keys."""
    failed = kind.errors.failed
    try:
        connection.execute("PRAGMA foreign_keys = OFF")  # no-op inside a transaction, so set it here
    except sqlite3.Error as exc:
        raise failed(f"{path}: cannot disable foreign keys for the migrations ({exc})", str(path)) from exc
    for migration in migrations:
        try:
            with _atomic(connection, "BEGIN IMMEDIATE"):
                if connection.execute("PRAGMA user_version").fetchone()[0] < migration.version:
                    for statement in _statements(migration.sql):
                        connection.execute(statement)
                    if on_migrate is not None:
                        on_migrate(connection, migration)
                    violations = connection.execute("PRAGMA foreign_key_check").fetchall()
                    if violations:
                        raise failed(
                            f"{path}: migration {migration.version} ({migration.description}) "
                            f"breaks foreign keys: {violations[:3]}",
                            str(path),
                        )
                    connection.execute(f"PRAGMA application_id = {kind.application_id:d}")
                    connection.execute(f"PRAGMA user_version = {migration.version:d}")
        except sqlite3.Error as exc:
            raise failed(
                f"{path}: migration {migration.version} ({migration.description}) failed: {exc}", str(path)
            ) from exc
    try:
        connection.execute("PRAGMA foreign_keys = ON")
        enforced = connection.execute("PRAGMA foreign_keys").fetchone()[0]
    except sqlite3.Error as exc:
        raise failed(f"{path}: cannot enable foreign keys ({exc})", str(path)) from exc
    if enforced != 1:
        raise failed(f"{path}: this SQLite build does not enforce foreign keys", str(path))


@contextlib.contextmanager
def _atomic(connection: sqlite3.Connection, begin: str) -> Iterator[None]:
    """``begin`` ... ``COMMIT``; anything raised inside, or by the commit, rolls back and propagates."""
    connection.execute(begin)
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:  # SQLite may have rolled back already
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise
