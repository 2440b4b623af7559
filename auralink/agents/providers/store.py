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

*Durability and privacy*, as every AuraLink database (``auralink._sqlite``): WAL mode with
``synchronous=NORMAL``, one short transaction per call, the file (and SQLite's ``-wal`` and
``-shm``, which inherit its mode) created 0600, ``PRAGMA application_id`` to refuse another
program's database, ``user_version`` for migrations (append, never edit). SQLite's errors, and a
file that is damaged, another program's or from a newer AuraLink, become
:class:`~auralink.errors.ProviderStoreError`.

*Time* is a wall-clock ``now`` passed in by the caller, because usage outlives the process and
plan periods are calendar days and months. Nothing here reads a clock.

*Threads.* One connection, guarded by a lock; each method holds it for one short transaction, so
calls may come from the event loop (as the router's do: they take microseconds) or from threads.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import TracebackType

from auralink._sqlite import Database, DatabaseErrors, DatabaseKind, Migration
from auralink.agents.providers.config import TenantConfig, parse_tenant_config
from auralink.agents.providers.types import Capability, Usage
from auralink.errors import ConfigError, LocalProtocolError, ProviderStoreError

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "ProviderStore"]

APPLICATION_ID = 0x41555250
"""``PRAGMA application_id`` of a provider database ("AURP")."""

_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "tenant configs and the usage meter",
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
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)
"""The schema version this build writes."""

_KIND = DatabaseKind(
    "provider database",
    APPLICATION_ID,
    DatabaseErrors(failed=ProviderStoreError),
    advice="Choose another path for the provider database, or move this file away "
    "(for example `mv {path} {path}.broken`) and save the tenants again",
)
"""How the provider database is opened, and what its refusals raise."""


def _now(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise LocalProtocolError(f"now must be finite, non-negative wall-clock seconds, not {value!r}")
    return float(value)


class ProviderStore:
    """Tenant configs and metered usage; use :meth:`open` (or ``with ProviderStore.open(path) as store:``)."""

    def __init__(self, db: Database) -> None:
        """Wrap a database that :meth:`open` has configured and migrated."""
        self._db = db

    def __repr__(self) -> str:
        return f"ProviderStore({str(self.path)!r})"

    @property
    def path(self) -> Path:
        """The database file."""
        return self._db.path

    @classmethod
    def open(cls, path: Path | str) -> ProviderStore:
        """Open (creating with mode 0600 if needed) and migrate the database at ``path``.

        A file that is not SQLite, is damaged, is another program's database or comes from a newer
        AuraLink raises :class:`~auralink.errors.ProviderStoreError` and is left untouched.
        """
        return cls(Database.open(Path(path), _KIND, _MIGRATIONS))

    def close(self) -> None:
        """Close the database; closing twice is allowed, any other later call raises LocalProtocolError."""
        self._db.close()

    def __enter__(self) -> ProviderStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- tenants -------------------------------------------------------------------------------

    def save_tenant(self, config: TenantConfig, now: float) -> None:
        """Store (or replace) a tenant's config; its keys are already sealed."""
        if not isinstance(config, TenantConfig):
            raise LocalProtocolError(f"expected a TenantConfig, not {type(config).__name__}")
        when = _now(now)
        with self._db.write() as db:
            db.execute(
                "INSERT INTO tenants (tenant_id, config, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (tenant_id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                (config.tenant_id, config.model_dump_json(), when),
            )

    def load_tenant(self, tenant_id: str) -> TenantConfig | None:
        """The stored config of ``tenant_id``, or None."""
        with self._db.read() as db:
            row = db.execute("SELECT config FROM tenants WHERE tenant_id = ?", (tenant_id,)).fetchone()
        if row is None:
            return None
        try:
            return parse_tenant_config(str(row[0]))
        except ConfigError as exc:
            raise ProviderStoreError(
                f"{self.path}: the stored config of tenant {tenant_id!r} is invalid ({exc}); save it again",
                str(self.path),
            ) from exc

    def tenant_ids(self) -> list[str]:
        """Every stored tenant, sorted."""
        with self._db.read() as db:
            return [str(row[0]) for row in db.execute("SELECT tenant_id FROM tenants ORDER BY tenant_id")]

    def delete_tenant(self, tenant_id: str, *, usage: bool = True) -> None:
        """Forget a tenant's config and, unless ``usage=False``, every usage row of it."""
        with self._db.write() as db:
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
        with self._db.write() as db:
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
        with self._db.read() as db:
            row = db.execute(query, arguments).fetchone()
        return Usage(int(row[0]), int(row[1]), float(row[2]), int(row[3]), bool(row[4]))
