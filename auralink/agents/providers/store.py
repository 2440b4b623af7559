"""The provider database: tenant configs (keys sealed) and the usage meter, in one SQLite file.

Theory of operation
===================

:class:`ProviderStore` keeps two things for the router, in a file whose path the caller chooses
(a node keeps it in its home, beside ``node.db``):

* **tenants**: each :class:`~auralink.agents.providers.config.TenantConfig` as JSON. API keys in
  it are :class:`~auralink.agents.providers.config.SealedKey` boxes, so nothing in the file opens
  without the sealing key; the store never sees a key in clear, because no config type can hold
  one.
* **usage**: one row per call that a provider served: tenant, provider, capability, wall-clock
  time, tokens in and out, seconds of audio, characters, and whether the numbers were estimated.
  :meth:`ProviderStore.usage` sums them over a period, for a tenant, optionally one provider; plan
  limits are checked against those sums.

*Durability and privacy*, as in the node's store: WAL mode with ``synchronous=NORMAL``, one
short transaction per call, the file (and SQLite's ``-wal`` and ``-shm``, which inherit its mode)
created 0600, ``PRAGMA application_id`` to refuse another program's database, ``user_version``
for migrations (append, never edit). SQLite's errors become
:class:`~auralink.errors.ProviderStoreError` here, once.

*Time* is a wall-clock ``now`` passed in by the caller, because usage outlives the process and
plan periods are calendar days and months. Nothing here reads a clock.

*Threads.* One connection, guarded by a lock; each method holds it for one short transaction, so
calls may come from the event loop (as the router's do: they take microseconds) or from threads.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from auralink.agents.providers.config import TenantConfig, parse_tenant_config
from auralink.agents.providers.types import Capability, Usage
from auralink.errors import ConfigError, LocalProtocolError, ProviderStoreError

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "ProviderStore"]

APPLICATION_ID = 0x41555250
"""``PRAGMA application_id`` of a provider database ("AURP")."""

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE tenants (
        tenant_id   TEXT PRIMARY KEY NOT NULL,
        config      TEXT NOT NULL,
        updated_at  REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE usage (
        id             INTEGER PRIMARY KEY,
        tenant_id      TEXT NOT NULL,
        provider       TEXT NOT NULL,
        capability     TEXT NOT NULL,
        at             REAL NOT NULL,
        input_tokens   INTEGER NOT NULL,
        output_tokens  INTEGER NOT NULL,
        audio_seconds  REAL NOT NULL,
        characters     INTEGER NOT NULL,
        estimated      INTEGER NOT NULL
    );
    CREATE INDEX usage_by_tenant_time ON usage (tenant_id, at);
    """,
)

SCHEMA_VERSION = len(_MIGRATIONS)
"""The schema version this build writes."""


def _create_private(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise ProviderStoreError(f"{path}: cannot create the provider database ({exc.strerror})", str(path)) from exc
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _now(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise LocalProtocolError(f"now must be finite, non-negative wall-clock seconds, not {value!r}")
    return float(value)


class ProviderStore:
    """Tenant configs and metered usage; use :meth:`open` (or ``with ProviderStore.open(path) as store:``)."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        """Wrap a connection that :meth:`open` has configured and migrated."""
        self._connection: sqlite3.Connection | None = connection
        self._lock = threading.Lock()
        self._path = path

    def __repr__(self) -> str:
        return f"ProviderStore({str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @classmethod
    def open(cls, path: Path | str) -> ProviderStore:
        """Open (creating with mode 0600 if needed) and migrate the database at ``path``."""
        path = Path(path)
        _create_private(path)
        try:
            connection = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ProviderStoreError(f"{path}: cannot open the provider database ({exc})", str(path)) from exc
        try:
            _prepare(connection, path)
        except BaseException:
            connection.close()
            raise
        return cls(connection, path)

    def close(self) -> None:
        """Close the database; closing twice is allowed, any other later call raises LocalProtocolError."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()

    def __enter__(self) -> ProviderStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._connection is None:
                raise LocalProtocolError("the provider store is closed")
            connection = self._connection
            try:
                connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise ProviderStoreError(
                    f"{self._path}: {'write' if write else 'read'} failed ({exc})", str(self._path)
                ) from exc

    # -- tenants -------------------------------------------------------------------------------

    def save_tenant(self, config: TenantConfig, now: float) -> None:
        """Store (or replace) a tenant's config; its keys are already sealed."""
        if not isinstance(config, TenantConfig):
            raise LocalProtocolError(f"expected a TenantConfig, not {type(config).__name__}")
        when = _now(now)
        with self._transaction(write=True) as db:
            db.execute(
                "INSERT INTO tenants (tenant_id, config, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (tenant_id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                (config.tenant_id, config.model_dump_json(), when),
            )

    def load_tenant(self, tenant_id: str) -> TenantConfig | None:
        """The stored config of ``tenant_id``, or None."""
        with self._transaction(write=False) as db:
            row = db.execute("SELECT config FROM tenants WHERE tenant_id = ?", (tenant_id,)).fetchone()
        if row is None:
            return None
        try:
            return parse_tenant_config(str(row[0]))
        except ConfigError as exc:
            raise ProviderStoreError(
                f"{self._path}: the stored config of tenant {tenant_id!r} is invalid ({exc}); save it again",
                str(self._path),
            ) from exc

    def tenant_ids(self) -> list[str]:
        """Every stored tenant, sorted."""
        with self._transaction(write=False) as db:
            return [str(row[0]) for row in db.execute("SELECT tenant_id FROM tenants ORDER BY tenant_id")]

    def delete_tenant(self, tenant_id: str, *, usage: bool = True) -> None:
        """Forget a tenant's config and, unless ``usage=False``, every usage row of it."""
        with self._transaction(write=True) as db:
            db.execute("DELETE FROM tenants WHERE tenant_id = ?", (tenant_id,))
            if usage:
                db.execute("DELETE FROM usage WHERE tenant_id = ?", (tenant_id,))

    # -- usage ---------------------------------------------------------------------------------

    def record_usage(self, tenant_id: str, provider: str, capability: Capability, usage: Usage, now: float) -> None:
        """Meter one call that ``provider`` served for ``tenant_id`` at wall-clock time ``now``."""
        when = _now(now)
        values = (usage.input_tokens, usage.output_tokens, usage.audio_seconds, usage.characters)
        if any(isinstance(v, bool) or not math.isfinite(v) or v < 0 for v in values):
            raise LocalProtocolError(f"usage must be finite and non-negative: {usage!r}")
        with self._transaction(write=True) as db:
            db.execute(
                "INSERT INTO usage (tenant_id, provider, capability, at, input_tokens, output_tokens, "
                "audio_seconds, characters, estimated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (tenant_id, provider, capability, when, *values, int(usage.estimated)),
            )

    def usage(
        self, tenant_id: str, *, since: float = 0.0, until: float = math.inf, provider: str | None = None
    ) -> Usage:
        """The usage of ``tenant_id`` (of one ``provider``, if given) metered in ``[since, until)``."""
        query = (
            "SELECT coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), "
            "coalesce(sum(audio_seconds), 0.0), coalesce(sum(characters), 0), coalesce(max(estimated), 0) "
            "FROM usage WHERE tenant_id = ? AND at >= ? AND at < ?"
        )
        arguments: tuple[object, ...] = (tenant_id, since, until if math.isfinite(until) else 1e300)
        if provider is not None:
            query += " AND provider = ?"
            arguments += (provider,)
        with self._transaction(write=False) as db:
            row = db.execute(query, arguments).fetchone()
        return Usage(int(row[0]), int(row[1]), float(row[2]), int(row[3]), bool(row[4]))


def _prepare(connection: sqlite3.Connection, path: Path) -> None:
    try:
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        objects = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise ProviderStoreError(f"{path}: not a SQLite database, or a damaged one ({exc})", str(path)) from exc
    if application_id != APPLICATION_ID and (application_id != 0 or objects or version):
        raise ProviderStoreError(
            f"{path}: a SQLite database of another program (application_id {application_id:#x}); "
            "choose another path for the provider database",
            str(path),
        )
    if version > SCHEMA_VERSION:
        raise ProviderStoreError(
            f"{path}: written by a newer AuraLink (schema {version}, this build knows {SCHEMA_VERSION}); upgrade",
            str(path),
        )
    try:
        connection.execute("PRAGMA busy_timeout = 5000")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        connection.execute("PRAGMA synchronous = NORMAL")
        if str(mode).lower() != "wal":
            raise ProviderStoreError(f"{path}: SQLite refused WAL mode (got {mode!r}); use a local disk", str(path))
        for number, script in enumerate(_MIGRATIONS, start=1):
            if number <= version:
                continue
            connection.execute("BEGIN IMMEDIATE")
            try:
                # Not executescript, which COMMITs first: the statements and the version bump are one transaction.
                for statement in (s.strip() for s in script.split(";")):
                    if statement:
                        connection.execute(statement)
                connection.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
                connection.execute(f"PRAGMA user_version = {number:d}")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
    except sqlite3.Error as exc:
        raise ProviderStoreError(f"{path}: cannot prepare the provider database ({exc})", str(path)) from exc
